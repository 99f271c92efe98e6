"""Genesys Cloud Open Messaging: the second Genesys backend (docs/genesys-cloud-contract.md)."""
