"""The operator console: server-rendered pages at /admin/ui over the admin services."""
