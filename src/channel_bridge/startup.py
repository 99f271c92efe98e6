"""Start-up faults as one line each: what is wrong, which variable, how to fix it.

Every entry point (`serve`, `worker`, `migrate`, `check-config`, the admin commands) turns a
configuration or connection fault into one such line on stderr and exit status 2; an operator
reading a k8s Job's log sees the cause, not a traceback. `describe_fault` knows the classes of
faults; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import sqlalchemy.exc
import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError
from sqlalchemy import text
from sqlalchemy.engine import make_url

from channel_bridge.settings import ConfigError, Settings

EXIT_FAULT = 2
_SETTINGS_ERROR_FIELD = re.compile(r'field "([a-z0-9_]+)"')
# Root causes that mean "this database cannot be reached or refuses us", by class name so that
# asyncpg and aiosqlite need not be imported to recognise them.
_AUTH_FAILURES = {"InvalidPasswordError", "InvalidAuthorizationSpecificationError"}
_MISSING_DATABASE = {"InvalidCatalogNameError"}
_MISSING_TABLE = {"UndefinedTableError"}


class StartupFault(Exception):
    """A fault the operator fixes in the configuration or the environment; one line."""


@dataclass(frozen=True, slots=True)
class DatabaseState:
    """What `check_database` found: where, and the schema revision against this version's."""

    where: str
    revision: str | None
    head: str


def variable(field: str) -> str:
    return f"BRIDGE_{field.upper()}"


# RFC 2606 names: a URL on them is a value copied from an example, never a tenant's.
_EXAMPLE_DOMAINS = ("example.com", "example.net", "example.org")
_ZERO_UUID = "00000000-0000-0000-0000-000000000000"


def example_values(settings: Settings) -> list[str]:
    """In prod, one line per setting still holding an example value (docker/k8s ships some)."""
    if settings.env != "prod":
        return []
    found = []
    for field in ("public_base_url", "axp_base_url", "nexus_base_url", "akixi_url"):
        host = (urlsplit(getattr(settings, field) or "").hostname or "").lower()
        if host.endswith(_EXAMPLE_DOMAINS) or host.endswith(".example"):
            found.append(
                f"{variable(field)} is an example URL ({host}): set the real one for "
                "BRIDGE_ENV=prod"
            )
    if settings.nexus_ccid == _ZERO_UUID:
        found.append(
            f"{variable('nexus_ccid')} is the all-zero example: set the tenant's contact-centre "
            "id for BRIDGE_ENV=prod"
        )
    return found


def load_settings(*, usable: bool = True, bind_host: str | None = None) -> Settings:
    """The settings (usable for this environment, served on `bind_host`, unless
    `usable=False`); else one line naming the variable, exit 2."""
    try:
        settings = Settings()
        if usable:
            settings.ensure_usable(bind_host=bind_host)
            examples = example_values(settings)
            if examples:
                raise ConfigError(examples[0])
    except Exception as exc:
        message = describe_fault(exc)
        if message is None:
            raise
        typer.echo(message, err=True)
        raise typer.Exit(EXIT_FAULT) from None
    return settings


def load_upstream_settings() -> Settings:
    """The settings for a command that calls AXP, Nexus or Akixi. In sandbox mode: the
    simulators the running `channel-bridge serve` mounts, so the command and the server share
    their state; one line and exit 2 when no server answers there."""
    settings = load_settings()
    if not settings.sandbox_mode:
        return settings
    from channel_bridge.sandbox.mode import served_sandbox_settings

    base = settings.public_base_url
    try:
        httpx.get(f"{base}/healthz", timeout=3.0).raise_for_status()
    except httpx.HTTPError as exc:
        typer.echo(
            f"sandbox mode (no BRIDGE_AXP_BASE_URL or BRIDGE_NEXUS_BASE_URL set): the simulated "
            f"upstreams are served by `channel-bridge serve` at {base}, which does not answer "
            f"({type(exc).__name__}): start it (make run), or set BRIDGE_PUBLIC_BASE_URL to "
            "where it runs",
            err=True,
        )
        raise typer.Exit(EXIT_FAULT) from None
    return served_sandbox_settings(settings)


def _flags_show_no_type() -> None:
    """Typer's help shows `<bool>` beside every flag (`--dry-run <bool>`), as if it took a
    value; a flag takes none, so its type column stays empty (typer has no setting for this)."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        if self.is_flag and self.metavar is None:
            return None
        return shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_show_no_type()


class FaultReportingGroup(typer.core.TyperGroup):
    """The root command group: a fault raised by any command becomes its one line, exit 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if isinstance(exc, typer.Exit | typer.Abort) or type(exc).__module__.startswith(
                ("typer", "click")
            ):
                raise  # usage errors and exits the commands chose
            message = describe_fault(exc, _settings_or_none())
            if message is None:
                raise
            typer.echo(message, err=True)
            raise typer.Exit(EXIT_FAULT) from None


def _settings_or_none() -> Settings | None:
    try:
        return Settings()
    except Exception:
        return None


def describe_fault(exc: BaseException, settings: Settings | None = None) -> str | None:
    """One line for a configuration or connection fault; None for anything else (a bug)."""
    if isinstance(exc, StartupFault):
        return str(exc)
    if isinstance(exc, ConfigError):
        return f"configuration error: {exc}"
    if isinstance(exc, ValidationError):
        return f"configuration error: {_describe_validation(exc)}"
    if isinstance(exc, SettingsError):
        found = _SETTINGS_ERROR_FIELD.search(str(exc))
        name = variable(found.group(1)) if found else "a BRIDGE_* variable"
        return f"configuration error: {name} is not valid JSON: lists and objects are JSON"
    if isinstance(exc, sqlalchemy.exc.ArgumentError):
        return f"configuration error: {variable('database_url')} is not a database URL"
    transport = next((c for c in _root_causes(exc) if isinstance(c, httpx.TransportError)), None)
    if transport is not None:
        return f"connection error: {describe_unreachable(transport)}"
    return _describe_database_fault(exc, settings)


def describe_unreachable(exc: httpx.TransportError) -> str:
    """`cannot reach <origin> (<class>): ...` naming the setting that holds that origin."""
    try:
        url: httpx.URL | None = exc.request.url
    except RuntimeError:  # an error raised before any request was built
        url = None
    where = f"{url.scheme}://{url.netloc.decode()}" if url else "an upstream"
    return (
        f"cannot reach {where} ({type(exc).__name__}): check that platform's base URL "
        "setting (BRIDGE_AXP_BASE_URL, BRIDGE_NEXUS_BASE_URL, BRIDGE_AKIXI_URL) and the network"
    )


def _describe_validation(exc: ValidationError) -> str:
    error = exc.errors(include_input=False, include_url=False)[0]
    loc = error.get("loc") or ()
    name = variable(str(loc[0])) if loc else "a BRIDGE_* variable"
    where = "".join(f"[{part!r}]" for part in loc[1:])
    message = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
    return f"{name}{where}: {message}"


def _root_causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        orig = getattr(current, "orig", None)
        following = current.__cause__ or current.__context__
        current = orig if isinstance(orig, BaseException) else following
    return chain


def _is_missing_table(exc: BaseException) -> bool:
    chain = _root_causes(exc)
    return any(type(cause).__name__ in _MISSING_TABLE for cause in chain) or any(
        "no such table" in str(cause).lower() for cause in chain
    )


def _database_where(settings: Settings | None) -> str:
    if settings is None:
        return "the database"
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return f"SQLite at {url.database}"
    return f"PostgreSQL at {url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"


def _describe_database_fault(exc: BaseException, settings: Settings | None) -> str | None:
    chain = _root_causes(exc)
    names = {type(cause).__name__ for cause in chain}
    db = variable("database_url")
    where = _database_where(settings)
    texts = " ".join(str(cause) for cause in chain).lower()
    if names & _AUTH_FAILURES:
        return (
            f"database error: {where} refused the credentials: check the user and password in {db}"
        )
    if names & _MISSING_DATABASE:
        return f"database error: {where} does not exist: create it, or fix the name in {db}"
    if _is_missing_table(exc):
        return f"database error: {where} has no bridge schema: run `channel-bridge migrate`"
    if "unable to open database file" in texts:
        return (
            f"database error: {where} cannot be opened: check the path in {db} and its permissions"
        )
    reachability = (ConnectionError, socket.gaierror, TimeoutError, asyncio.TimeoutError)
    if any(isinstance(cause, reachability) for cause in chain) or isinstance(
        exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError
    ):
        cause = next(
            (c for c in chain if isinstance(c, reachability)),
            next((c for c in chain if not isinstance(c, sqlalchemy.exc.SQLAlchemyError)), exc),
        )
        return (
            f"database error: cannot connect to {where} ({type(cause).__name__}): check the "
            f"host and port in {db} and that the server is running"
        )
    return None


async def check_database(settings: Settings) -> DatabaseState:
    """Connect, and read the schema revision; StartupFault unless migrated to this version
    (or to a newer one: during a rolling update the old pods run on the new schema)."""
    from channel_bridge.db.engine import create_engine
    from channel_bridge.db.migrate import head_revision, is_known_revision

    head = head_revision(settings.database_url)
    engine = create_engine(settings)
    try:
        async with asyncio.timeout(settings.db_connect_timeout_s + 1), engine.connect() as conn:
            try:
                revision = (
                    await conn.execute(text("SELECT version_num FROM alembic_version"))
                ).scalar()
            except sqlalchemy.exc.DBAPIError as exc:
                if not _is_missing_table(exc):
                    raise
                revision = None
    except Exception as exc:
        message = describe_fault(exc, settings)
        if message is None:
            raise
        raise StartupFault(message) from None
    finally:
        await engine.dispose()
    where = _database_where(settings)
    if revision is None:
        raise StartupFault(
            f"database error: {where} has no bridge schema: run `channel-bridge migrate`"
        )
    if revision != head and is_known_revision(settings.database_url, revision):
        raise StartupFault(
            f"database error: {where} is at revision {revision}, this version needs {head}: "
            "run `channel-bridge migrate`"
        )
    return DatabaseState(where=where, revision=revision, head=head)
