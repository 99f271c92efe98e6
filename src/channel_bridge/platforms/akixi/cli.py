"""`channel-bridge akixi`: compare our integrations with Akixi's entries, repair drift, show one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from channel_bridge.cli_support import command_settings, in_transaction
from channel_bridge.mappings.repository import IntegrationRepository
from channel_bridge.ops.logging import configure_logging
from channel_bridge.outbound import build_client
from channel_bridge.platforms.akixi.client import AkixiClient
from channel_bridge.platforms.akixi.errors import AkixiEntryNotFound, AkixiError
from channel_bridge.platforms.akixi.mirror import (
    IntegrationState,
    SyncFinding,
    plan_sync,
    repair,
)
from channel_bridge.platforms.akixi.xml import describe
from channel_bridge.settings import Settings

akixi_app = typer.Typer(
    help="Akixi Omnichannel mirror: drift report and repair, entry info.", no_args_is_help=True
)

ClientFactory = Callable[[Settings], AbstractAsyncContextManager[AkixiClient]]


@asynccontextmanager
async def open_akixi_client(settings: Settings) -> AsyncIterator[AkixiClient]:
    """A client on its own HTTP connection pool, closed afterwards."""
    async with build_client(settings) as http:
        yield AkixiClient(http, settings)


# Tests replace this with a factory bound to the in-process simulator.
client_factory: ClientFactory = open_akixi_client


def _console() -> Console:
    # Wide enough that UniqueIDs are never wrapped when the output is piped or captured.
    console = Console()
    return console if console.is_terminal else Console(width=200)


def _settings() -> Settings:
    settings = command_settings(upstream=True)
    # Logs go to stderr so the report on stdout stays clean; secrets are scrubbed.
    configure_logging(level="WARNING", fmt="console", secret_values=settings.secret_values())
    if not settings.akixi_url:
        typer.echo("configuration error: BRIDGE_AKIXI_URL is not set", err=True)
        raise typer.Exit(2)
    return settings


async def _our_integrations(settings: Settings) -> list[IntegrationState]:
    async def read(session: AsyncSession) -> list[IntegrationState]:
        rows = await IntegrationRepository(session).list_all(include_deleted=True)
        return [
            IntegrationState(row.integration_id, row.name, row.status == "active") for row in rows
        ]

    return await in_transaction(settings, read)


async def _sync(settings: Settings, *, dry_run: bool, console: Console) -> int:
    integrations = await _our_integrations(settings)
    async with client_factory(settings) as client:
        entries = await client.omnichannel_list()
        findings = plan_sync(settings, integrations, entries, scope=client.partition_scope())
        results: dict[int, str] = {}
        failures = 0
        if not dry_run:
            for index, finding in enumerate(findings):
                try:
                    outcome = await repair(client, settings, finding, integrations)
                    results[index] = "repaired: " + " + ".join(outcome.get("operations", []))
                except AkixiError as exc:
                    failures += 1
                    results[index] = f"failed: {exc}"
    _print_findings(console, findings, results, dry_run=dry_run)
    counts = {
        kind: sum(1 for f in findings if f.kind == kind)
        for kind in ("missing", "orphaned", "drifted")
    }
    console.print(
        f"{len(integrations)} integrations, {len(entries)} Akixi entries in scope; "
        + ", ".join(f"{kind}: {count}" for kind, count in counts.items())
        + (" (dry run: nothing changed)" if dry_run else "")
    )
    return 1 if failures else 0


def _print_findings(
    console: Console, findings: list[SyncFinding], results: dict[int, str], *, dry_run: bool
) -> None:
    if not findings:
        console.print("Akixi is in sync with our integrations.")
        return
    table = Table(title="Akixi drift" + (" (dry run)" if dry_run else ""))
    table.add_column("Kind")
    table.add_column("UniqueID", no_wrap=True)
    table.add_column("Integration", no_wrap=True)
    table.add_column("Detail")
    if not dry_run:
        table.add_column("Result")
    for index, finding in enumerate(findings):
        # No UniqueID: Akixi assigns them and its List did not return this one.
        row = [
            finding.kind,
            finding.unique_id or "-",
            finding.integration_id or "-",
            finding.detail,
        ]
        if not dry_run:
            row.append(results.get(index, ""))
        table.add_row(*row)
    console.print(table)


def _run(coroutine: Any) -> int:
    try:
        return int(asyncio.run(coroutine))
    except AkixiError as exc:
        typer.echo(f"akixi error: {exc}", err=True)
        return 1


@akixi_app.command("sync")
def sync(
    dry_run: bool = typer.Option(False, "--dry-run", help="Report drift without changing Akixi"),
) -> None:
    """Report missing, orphaned and drifted Akixi entries; repair them unless --dry-run."""
    settings = _settings()
    code = _run(_sync(settings, dry_run=dry_run, console=_console()))
    if code:
        raise typer.Exit(code)


async def _info(settings: Settings, unique_id: str, *, as_json: bool, console: Console) -> int:
    async with client_factory(settings) as client:
        try:
            entry = await client.omnichannel_info(unique_id)
        except AkixiEntryNotFound:
            typer.echo(f"no Akixi entry with UniqueID {unique_id}", err=True)
            return 1
    if as_json:
        typer.echo(json.dumps(describe(entry.properties), indent=2, sort_keys=True))
        return 0
    table = Table(title=f"Akixi entry {unique_id}")
    table.add_column("Property", no_wrap=True)
    table.add_column("Value")
    for name, value in _flatten(entry.properties):
        shown = "***" if "password" in name.lower() else value
        table.add_row(name, shown)
    console.print(table)
    return 0


def _flatten(items: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for name, value in items.items():
        if isinstance(value, dict):
            rows.extend(_flatten(value, f"{prefix}{name}."))
        else:
            rows.append((prefix + name, str(value)))
    return rows


@akixi_app.command("info")
def info(
    unique_id: str = typer.Argument(..., help="The entry's UniqueID, e.g. axp-<integration id>"),
    as_json: bool = typer.Option(False, "--json", help="Print the properties as JSON"),
) -> None:
    """Show every property of one Akixi Omnichannel entry (passwords masked)."""
    settings = _settings()
    code = _run(_info(settings, unique_id, as_json=as_json, console=_console()))
    if code:
        raise typer.Exit(code)
