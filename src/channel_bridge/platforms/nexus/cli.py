"""`channel-bridge nexus ...`: provision the Digital Channels services, capture real payloads."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import sqlalchemy.exc
import typer

from channel_bridge.cli_support import command_settings, fail, with_database
from channel_bridge.platforms.nexus import capture as capture_module
from channel_bridge.platforms.nexus.errors import NexusApiError
from channel_bridge.platforms.nexus.provisioning import (
    ASYNC_SERVICE,
    SMS_SERVICE,
    SMS_SERVICE_BODY,
    ProvisioningError,
    async_service_body,
    load_channels,
    masked,
    missing_settings,
    post_service,
    service_url,
)
from channel_bridge.security import SecretBox
from channel_bridge.settings import Settings

app = typer.Typer(
    help="Genesys Digital Channels (Nexus): provisioning and payload capture", no_args_is_help=True
)


async def _with_database(settings: Settings, work: Any) -> Any:
    secret_box = SecretBox(settings.secret_key) if settings.secret_key else None
    try:
        return await with_database(settings, lambda factory: work(factory, secret_box))
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise fail(
            f"database not usable ({type(exc).__name__}): check BRIDGE_DATABASE_URL and run "
            "`channel-bridge migrate`"
        ) from None


async def _post(settings: Settings, service: str, body: dict[str, Any]) -> int:
    from channel_bridge.outbound import build_client

    async with build_client(settings) as http:
        response = await post_service(http, settings, service, body)
    return response.status_code


def _print_plan(settings: Settings, service: str, body: dict[str, Any]) -> None:
    typer.echo(f"POST {service_url(settings, service)}", err=True)
    typer.echo(json.dumps(masked(body), indent=2))


@app.command()
def provision(
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the body (secrets masked); send nothing"
    ),
) -> None:
    """Create or replace the Async service from the enabled channels in the database."""
    settings = command_settings(upstream=not dry_run)
    missing = missing_settings(settings)
    if missing and not dry_run:
        raise fail(f"{', '.join(missing)} must be set to provision Nexus services")
    try:
        channels = asyncio.run(_with_database(settings, load_channels))
    except ProvisioningError as exc:
        raise fail(str(exc)) from None
    body = async_service_body(settings, channels)
    _print_plan(settings, ASYNC_SERVICE, body)
    if dry_run:
        return
    try:
        status = asyncio.run(_post(settings, ASYNC_SERVICE, body))
    except (ProvisioningError, NexusApiError) as exc:
        raise fail(str(exc)) from None
    typer.echo(
        f"Async service provisioned for {len(channels)} channel(s) (HTTP {status})", err=True
    )


@app.command("provision-sms")
def provision_sms(
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the body; send nothing"),
) -> None:
    """Create the SMS service that selects the Async provider."""
    settings = command_settings(upstream=not dry_run)
    missing = missing_settings(settings)
    if missing and not dry_run:
        raise fail(f"{', '.join(missing)} must be set to provision Nexus services")
    _print_plan(settings, SMS_SERVICE, SMS_SERVICE_BODY)
    if dry_run:
        return
    try:
        status = asyncio.run(_post(settings, SMS_SERVICE, SMS_SERVICE_BODY))
    except (ProvisioningError, NexusApiError) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"SMS service provisioned with provider Async (HTTP {status})", err=True)


@app.command()
def capture(
    last: int = typer.Option(
        10, "--last", min=1, max=10_000, help="How many of the newest webhooks"
    ),
    out: Path = typer.Option(
        Path("tests/fixtures/nexus/captured"), "--out", help="Folder to write"
    ),
) -> None:
    """Write the newest stored webhook bodies as fixture files, secrets masked."""
    settings = command_settings()

    async def work(sessionmaker: Any, secret_box: SecretBox | None) -> list[Path]:
        return await capture_module.capture(
            settings=settings, sessionmaker=sessionmaker, secret_box=secret_box, last=last, out=out
        )

    written = asyncio.run(_with_database(settings, work))
    for path in written:
        typer.echo(str(path))
    typer.echo(
        f"{len(written)} webhook bod{'y' if len(written) == 1 else 'ies'} written to {out}",
        err=True,
    )
