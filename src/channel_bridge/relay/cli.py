"""`channel-bridge deliveries list|show|replay|cancel` and `channel-bridge worker`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from channel_bridge.cli_support import command_settings, in_transaction
from channel_bridge.db.models import DeliveryStatus
from channel_bridge.errors import BridgeError
from channel_bridge.relay import service
from channel_bridge.settings import Settings

deliveries_app = typer.Typer(
    help="Inspect, replay and cancel outbound deliveries.", no_args_is_help=True
)
T = TypeVar("T")


def _console() -> Console:
    # Built per command so the terminal width (COLUMNS) is read when the command runs.
    return Console()


def _with_session(settings: Settings, action: Callable[[AsyncSession], Awaitable[T]]) -> T:
    try:
        return asyncio.run(in_transaction(settings, action))
    except BridgeError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1 if exc.status != 404 else 4) from None


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _deliveries_table(items: list[Any]) -> Table:
    table = Table(show_lines=False)
    for column in (
        "id",
        "status",
        "destination",
        "partition",
        "attempts",
        "next attempt (UTC)",
        "created (UTC)",
        "last error",
    ):
        table.add_column(column, overflow="fold")
    for d in items:
        status = d.status + (" (skipped)" if d.skipped else "")
        table.add_row(
            str(d.id),
            status,
            d.destination,
            d.partition_key or "",
            str(d.attempt_count),
            _when(d.next_attempt_at) if d.status == DeliveryStatus.PENDING else "",
            _when(d.created_at),
            (d.last_error or "")[:80],
        )
    return table


StatusOption = typer.Option(None, help="pending, in_flight, delivered, dead or cancelled")
SinceOption = typer.Option(None, help="Created at or after (ISO 8601; UTC when no offset)")
UntilOption = typer.Option(None, help="Created before (ISO 8601; UTC when no offset)")


@deliveries_app.command("list")
def list_command(
    status: str | None = StatusOption,
    destination: str | None = typer.Option(None, help="Destination name, e.g. axp.send_message"),
    partition: str | None = typer.Option(None, help="Partition key (the conversation)"),
    since: datetime | None = SinceOption,
    until: datetime | None = UntilOption,
    limit: int = typer.Option(50, min=1, max=service.MAX_PAGE_SIZE),
    cursor: str | None = typer.Option(None, help="Continue from a previous page"),
) -> None:
    """List deliveries, newest first."""
    page = _with_session(
        command_settings(),
        lambda session: service.list_deliveries(
            session,
            status=status,
            destination=destination,
            partition_key=partition,
            since=since,
            until=until,
            cursor=cursor,
            limit=limit,
        ),
    )
    circuits = _with_session(command_settings(), service.circuit_statuses)
    if circuits:
        _console().print(_circuits_table(circuits))
    _console().print(_deliveries_table(page.items))
    if page.next_cursor:
        _console().print(f"more: --cursor {page.next_cursor}")


def _circuits_table(circuits: list[service.CircuitStatus]) -> Table:
    table = Table(title="upstreams (circuit breakers)")
    for column in ("upstream", "state", "failures", "until / next probe (UTC)", "last error"):
        table.add_column(column, overflow="fold")
    for c in circuits:
        moment = c.paused_until or c.next_probe_at
        table.add_row(
            c.key,
            c.status,
            str(c.consecutive_failures),
            _when(moment),
            (c.last_error or "")[:80],
        )
    return table


@deliveries_app.command("show")
def show_command(delivery_id: int) -> None:
    """Show one delivery with its payload and attempts."""
    delivery, attempts = _with_session(
        command_settings(), lambda s: service.get_delivery(s, delivery_id)
    )
    _console().print(_deliveries_table([delivery]))
    _console().print_json(json.dumps(delivery.payload, default=str))
    if delivery.result:
        _console().print("result:")
        _console().print_json(json.dumps(delivery.result, default=str))
    table = Table(title="attempts")
    for column in ("#", "started (UTC)", "ms", "outcome", "http", "class", "error", "worker"):
        table.add_column(column, overflow="fold")
    for a in attempts:
        table.add_row(
            str(a.number),
            _when(a.started_at),
            f"{a.duration_ms or 0:.0f}",
            a.outcome,
            str(a.http_status or ""),
            a.error_class or "",
            (a.error or "")[:80],
            a.worker_id or "",
        )
    _console().print(table)


@deliveries_app.command("replay")
def replay_command(
    delivery_id: int | None = typer.Argument(
        None, help="One delivery; omit to replay all dead in a window"
    ),
    force: bool = typer.Option(False, "--force", help="Send again even if already delivered"),
    since: datetime | None = SinceOption,
    until: datetime | None = UntilOption,
    destination: str | None = typer.Option(None, help="Only dead deliveries to this destination"),
) -> None:
    """Replay one delivery, or every dead delivery created in [--since, --until)."""
    settings = command_settings()
    if delivery_id is not None:
        delivery = _with_session(
            settings, lambda s: service.replay_delivery(s, delivery_id, force=force)
        )
        _console().print(f"delivery {delivery.id} scheduled again ({delivery.destination})")
        return
    if since is None or until is None:
        typer.echo("error: give a delivery id, or both --since and --until", err=True)
        raise typer.Exit(2)
    count = _with_session(
        settings,
        lambda s: service.replay_dead(
            s,
            since=since,
            until=until,
            destination=destination,
            max_window_days=settings.replay_max_window_days,
        ),
    )
    _console().print(f"{count} dead deliveries scheduled again")


@deliveries_app.command("cancel")
def cancel_command(delivery_id: int) -> None:
    """Cancel a pending or dead delivery."""
    delivery = _with_session(command_settings(), lambda s: service.cancel_delivery(s, delivery_id))
    _console().print(f"delivery {delivery.id} is {delivery.status}")


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """uvloop where installed, as `serve` runs under uvicorn (loop="auto"): its event loop
    and socket I/O cost a fraction of asyncio's, which is most of a relay worker's time
    between database and HTTP calls."""
    try:
        import uvloop
    except ImportError:  # not on every platform (uvicorn[standard] installs it on Linux)
        asyncio.run(main)
    else:
        uvloop.run(main)
