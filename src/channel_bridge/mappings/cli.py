"""`channel-bridge channels ...` and `channel-bridge integrations ...`: the admin API's services.

Secrets are read from options or hidden prompts and never printed; output shows only whether
a secret is set and how many webhook secrets overlap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.cli_support import command_context, command_settings, with_database
from channel_bridge.db.engine import transaction
from channel_bridge.errors import BridgeError, field_errors_from_pydantic
from channel_bridge.mappings.schemas import (
    ChannelCreate,
    ChannelOut,
    ChannelUpdate,
    HeldCallbackOut,
    HeldCallbackResolve,
    IntegrationCreate,
    IntegrationOut,
)
from channel_bridge.mappings.secret_rotation import RotationReport, rotate_stored_secrets
from channel_bridge.mappings.service import ChannelService, IntegrationService
from channel_bridge.relay.inbox import Inbox
from channel_bridge.security import SecretBox

channels_app = typer.Typer(
    help="Channel mappings: a Nexus channel <-> an AXP integration", no_args_is_help=True
)
integrations_app = typer.Typer(
    help="AXP messaging integrations (the manual path)", no_args_is_help=True
)
secrets_app = typer.Typer(
    help="Secrets stored in the database (encrypted with BRIDGE_SECRET_KEY)", no_args_is_help=True
)

T = TypeVar("T")
Work = Callable[[async_sessionmaker[AsyncSession], SecretBox | None], Awaitable[T]]

console = Console()


def _run(work: Work[T]) -> T:
    """Run `work` against the configured database; a BridgeError exits 1 with its message."""
    settings = command_settings()
    secret_box = SecretBox(settings.secret_key) if settings.secret_key else None
    try:
        return asyncio.run(with_database(settings, lambda factory: work(factory, secret_box)))
    except BridgeError as exc:
        _print_error(exc.detail, exc.errors or [])
        raise typer.Exit(1) from None


def _validate(model: type[Any], values: dict[str, Any]) -> Any:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        _print_error(
            "invalid input", field_errors_from_pydantic(list(exc.errors(include_input=False)))
        )
        raise typer.Exit(1) from None


def _print_error(detail: str, errors: list[dict[str, Any]]) -> None:
    err = Console(stderr=True)
    err.print(f"[red]error:[/red] {detail}", highlight=False)
    for error in errors:
        err.print(f"  {error['field']}: {error['message']}", highlight=False, markup=False)


def _secrets(
    webhook_secrets: list[str] | None, api_secret: str | None, prompt_secrets: bool
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if prompt_secrets:
        typed = typer.prompt(
            "Nexus webhook secret (empty: keep/none)",
            default="",
            hide_input=True,
            show_default=False,
        )
        if typed:
            webhook_secrets = [typed, *(webhook_secrets or [])]
        typed = typer.prompt(
            "Nexus API secret (empty: keep/none)", default="", hide_input=True, show_default=False
        )
        api_secret = typed or api_secret
    if webhook_secrets:
        values["webhook_secrets"] = webhook_secrets
    if api_secret:
        values["api_secret"] = api_secret
    return values


def _channel_table(channels: list[ChannelOut]) -> Table:
    table = Table(title="Channel mappings")
    for column in (
        "nexus channel",
        "integration",
        "account",
        "channel provider",
        "AXP channel",
        "identifier key",
        "backend",
        "enabled",
        "secrets",
    ):
        table.add_column(column)
    for channel in channels:
        table.add_row(
            channel.nexus_channel_id,
            channel.axp_integration_id,
            channel.axp_account_id,
            channel.axp_channel_provider_id,
            channel.axp_channel_id,
            channel.customer_identifier_key,
            channel.backend,
            "yes" if channel.enabled else f"no ({channel.disabled_reason or 'disabled'})",
            _secret_summary(channel),
        )
    return table


def _secret_summary(channel: ChannelOut) -> str:
    webhook = "none"
    if channel.has_webhook_secret:
        webhook = (
            "set" if channel.webhook_secret_count is None else f"{channel.webhook_secret_count} set"
        )
    return f"webhook: {webhook}; api: {'set' if channel.has_api_secret else 'none'}"


def _details(title: str, values: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in values.items():
        table.add_row(key, "" if value is None else str(value))
    return table


def _show_channel(channel: ChannelOut) -> None:
    console.print(_details(f"Channel {channel.nexus_channel_id}", channel.model_dump()))


# --- channels -------------------------------------------------------------------------


@channels_app.command("add")
def channels_add(
    nexus_channel_id: str = typer.Argument(
        ..., help="Nexus channelId, e.g. the SMS number +15559870000"
    ),
    integration: str = typer.Option(..., "--integration", "-i", help="AXP integration id"),
    account: str | None = typer.Option(
        None, "--account", help="AXP account id (default: the integration's)"
    ),
    channel_provider: str | None = typer.Option(
        None, "--channel-provider", help="AXP channelProviderId (default: the integration's)"
    ),
    axp_channel_id: str = typer.Option("Messaging", "--axp-channel-id", help="AXP channelId"),
    identifier_key: str = typer.Option(
        "phoneNumbers",
        "--identifier-key",
        help="Customer Journey identifier for the customer address",
    ),
    webhook_secret: list[str] | None = typer.Option(
        None,
        "--webhook-secret",
        help="Nexus webhook secret (repeat for a rotation overlap, newest first)",
    ),
    api_secret: str | None = typer.Option(None, "--api-secret", help="Nexus API secret"),
    prompt_secrets: bool = typer.Option(
        False, "--prompt-secrets", help="Ask for the secrets (hidden)"
    ),
    disabled: bool = typer.Option(False, "--disabled", help="Create it disabled"),
    backend: str = typer.Option(
        "nexus",
        "--backend",
        help="nexus | genesys-cloud (then the id is the Open Messaging integration id)",
    ),
) -> None:
    """Map a Nexus channel (or Genesys Cloud Open Messaging integration) to an AXP integration."""
    values: dict[str, Any] = {
        "nexus_channel_id": nexus_channel_id,
        "axp_integration_id": integration,
        "axp_account_id": account,
        "axp_channel_provider_id": channel_provider,
        "axp_channel_id": axp_channel_id,
        "customer_identifier_key": identifier_key,
        "enabled": not disabled,
        "backend": backend,
        **_secrets(webhook_secret, api_secret, prompt_secrets),
    }
    data = _validate(ChannelCreate, values)

    async def work(
        sessionmaker: async_sessionmaker[AsyncSession], box: SecretBox | None
    ) -> ChannelOut:
        service = ChannelService(secret_box=box)
        async with transaction(sessionmaker) as session:
            return service.to_out(await service.create(session, data))

    channel = _run(work)
    console.print(f"channel {channel.nexus_channel_id} created", highlight=False)
    _show_channel(channel)


@channels_app.command("list")
def channels_list() -> None:
    """List channel mappings."""

    async def work(
        sessionmaker: async_sessionmaker[AsyncSession], box: SecretBox | None
    ) -> list[ChannelOut]:
        service = ChannelService(secret_box=box)
        async with transaction(sessionmaker) as session:
            return [service.to_out(channel) for channel in await service.list_channels(session)]

    console.print(_channel_table(_run(work)))


@channels_app.command("show")
def channels_show(nexus_channel_id: str = typer.Argument(...)) -> None:
    """Show one channel mapping (secrets only as set / not set)."""

    async def work(
        sessionmaker: async_sessionmaker[AsyncSession], box: SecretBox | None
    ) -> ChannelOut:
        service = ChannelService(secret_box=box)
        async with transaction(sessionmaker) as session:
            return service.to_out(await service.get(session, nexus_channel_id))

    _show_channel(_run(work))


@channels_app.command("update")
def channels_update(
    nexus_channel_id: str = typer.Argument(...),
    integration: str | None = typer.Option(None, "--integration", "-i"),
    account: str | None = typer.Option(None, "--account"),
    channel_provider: str | None = typer.Option(None, "--channel-provider"),
    axp_channel_id: str | None = typer.Option(None, "--axp-channel-id"),
    identifier_key: str | None = typer.Option(None, "--identifier-key"),
    webhook_secret: list[str] | None = typer.Option(
        None,
        "--webhook-secret",
        help="Replace the webhook secrets (repeat for an overlap, newest first)",
    ),
    api_secret: str | None = typer.Option(None, "--api-secret"),
    prompt_secrets: bool = typer.Option(
        False, "--prompt-secrets", help="Ask for new secrets (hidden)"
    ),
    enabled: bool | None = typer.Option(None, "--enable/--disable", help="Enable or disable"),
) -> None:
    """Change a channel mapping; only the options given change."""
    given = {
        "axp_integration_id": integration,
        "axp_account_id": account,
        "axp_channel_provider_id": channel_provider,
        "axp_channel_id": axp_channel_id,
        "customer_identifier_key": identifier_key,
        "enabled": enabled,
    }
    values = {key: value for key, value in given.items() if value is not None}
    values.update(_secrets(webhook_secret, api_secret, prompt_secrets))
    data = _validate(ChannelUpdate, values)

    async def work(
        sessionmaker: async_sessionmaker[AsyncSession], box: SecretBox | None
    ) -> ChannelOut:
        service = ChannelService(secret_box=box)
        async with transaction(sessionmaker) as session:
            return service.to_out(
                await service.update(session, nexus_channel_id, data, source="cli")
            )

    channel = _run(work)
    console.print(f"channel {channel.nexus_channel_id} updated", highlight=False)
    _show_channel(channel)


@channels_app.command("disable")
def channels_disable(
    nexus_channel_id: str = typer.Argument(...),
    reason: str | None = typer.Option(None, "--reason", help="Shown in the admin API"),
) -> None:
    """Stop relaying for a channel (its webhooks get 404); the mapping stays."""

    async def work(
        sessionmaker: async_sessionmaker[AsyncSession], box: SecretBox | None
    ) -> ChannelOut:
        service = ChannelService(secret_box=box)
        async with transaction(sessionmaker) as session:
            channel = await service.disable(session, nexus_channel_id, reason=reason, source="cli")
            return service.to_out(channel)

    channel = _run(work)
    console.print(
        f"channel {channel.nexus_channel_id} disabled: {channel.disabled_reason}",
        highlight=False,
        markup=False,
    )


@channels_app.command("remove")
def channels_remove(
    nexus_channel_id: str = typer.Argument(...),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation"),
) -> None:
    """Delete a channel mapping with its conversation history (disable keeps it)."""
    if not yes:
        typer.confirm(f"Delete channel {nexus_channel_id} and its conversations?", abort=True)

    async def work(sessionmaker: async_sessionmaker[AsyncSession], box: SecretBox | None) -> None:
        async with transaction(sessionmaker) as session:
            await ChannelService(secret_box=box).remove(session, nexus_channel_id)

    _run(work)
    console.print(f"channel {nexus_channel_id} removed", highlight=False)


# --- integrations ---------------------------------------------------------------------


# The integration fields, the same options wherever a command takes them.
NAME_OPTION = typer.Option(None, "--name")
ACCOUNT_OPTION = typer.Option(None, "--account", help="AXP account id")
CHANNEL_PROVIDER_OPTION = typer.Option(None, "--channel-provider", help="AXP channelProviderId")
# inbox_events.id is a BIGINT.
HELD_ID_ARGUMENT = typer.Argument(..., min=1, max=2**63 - 1, help="Id from `integrations pending`")


def _integration_service(
    ctx: typer.Context, sessionmaker: async_sessionmaker[AsyncSession]
) -> IntegrationService:
    return IntegrationService(
        inbox=Inbox(sessionmaker),
        sessionmaker=sessionmaker,
        # The bridge's planner, handed down by the root CLI: mappings never import the bridge.
        planner=command_context(ctx).integration_change,
    )


def _integration_table(rows: list[IntegrationOut]) -> Table:
    table = Table(title="Integrations")
    for column in (
        "integration",
        "name",
        "account",
        "channel provider",
        "status",
        "source",
        "updated",
    ):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.integration_id,
            row.name or "",
            row.account_id or "",
            row.channel_provider_id or "",
            row.status,
            row.source,
            row.updated_at.strftime("%Y-%m-%d %H:%M:%SZ"),
        )
    return table


@integrations_app.command("add")
def integrations_add(
    ctx: typer.Context,
    integration_id: str = typer.Argument(
        ..., help="AXP Integration Id (sent as businessAccountName)"
    ),
    name: str | None = NAME_OPTION,
    account: str | None = ACCOUNT_OPTION,
    channel_provider: str | None = CHANNEL_PROVIDER_OPTION,
) -> None:
    """Record an integration created in the AXP portal (the fallback for a missing callback)."""
    data = _validate(
        IntegrationCreate,
        {
            "integration_id": integration_id,
            "name": name,
            "account_id": account,
            "channel_provider_id": channel_provider,
        },
    )

    async def work(sessionmaker: async_sessionmaker[AsyncSession], _box: SecretBox | None) -> Any:
        service = _integration_service(ctx, sessionmaker)
        change = await service.apply_integration_change(
            action="created",
            integration_id=data.integration_id,
            name=data.name,
            account_id=data.account_id,
            channel_provider_id=data.channel_provider_id,
            raw=data.model_dump(exclude_none=True),
            source="cli",
            require_existing=False,
        )
        async with transaction(sessionmaker) as session:
            return service.to_out(await service.get(session, data.integration_id)), change

    integration, change = _run(work)
    console.print(
        f"integration {integration.integration_id} added; "
        f"{len(change.delivery_ids)} mirror deliveries queued",
        highlight=False,
    )
    console.print(_details(f"Integration {integration.integration_id}", integration.model_dump()))


@integrations_app.command("list")
def integrations_list(
    ctx: typer.Context,
    include_deleted: bool = typer.Option(False, "--all", help="Also show deleted integrations"),
) -> None:
    """List integrations."""

    async def work(sessionmaker: async_sessionmaker[AsyncSession], _box: SecretBox | None) -> Any:
        service = _integration_service(ctx, sessionmaker)
        async with transaction(sessionmaker) as session:
            return [
                service.to_out(row)
                for row in await service.list_integrations(session, include_deleted=include_deleted)
            ]

    console.print(_integration_table(_run(work)))


@integrations_app.command("show")
def integrations_show(ctx: typer.Context, integration_id: str = typer.Argument(...)) -> None:
    """Show one integration and the channels mapped to it."""

    async def work(sessionmaker: async_sessionmaker[AsyncSession], box: SecretBox | None) -> Any:
        service = _integration_service(ctx, sessionmaker)
        channels = ChannelService(secret_box=box)
        async with transaction(sessionmaker) as session:
            integration = service.to_out(await service.get(session, integration_id))
            mapped = [
                channels.to_out(c)
                for c in await channels.list_channels(session, integration_id=integration_id)
            ]
        return integration, mapped

    integration, mapped = _run(work)
    console.print(_details(f"Integration {integration.integration_id}", integration.model_dump()))
    if mapped:
        console.print(_channel_table(mapped))


@integrations_app.command("remove")
def integrations_remove(
    ctx: typer.Context,
    integration_id: str = typer.Argument(...),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation"),
) -> None:
    """Mark an integration deleted: its channels are disabled and Akixi is told."""
    if not yes:
        typer.confirm(f"Delete integration {integration_id} and disable its channels?", abort=True)

    async def work(sessionmaker: async_sessionmaker[AsyncSession], _box: SecretBox | None) -> Any:
        return await _integration_service(ctx, sessionmaker).apply_integration_change(
            action="deleted",
            integration_id=integration_id,
            raw=None,
            source="cli",
            require_existing=True,
        )

    change = _run(work)
    console.print(f"integration {integration_id} deleted", highlight=False)
    for nexus_channel_id in change.disabled_channels:
        console.print(f"  channel {nexus_channel_id} disabled", highlight=False)


# --- callbacks held for review -------------------------------------------------------


def _held_table(rows: list[HeldCallbackOut]) -> Table:
    table = Table(title="Integration callbacks held for review")
    for column in ("id", "received", "method", "problems", "read so far", "body"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row.id),
            row.received_at.strftime("%Y-%m-%d %H:%M:%SZ"),
            row.method or "",
            "\n".join(f"{p['field']}: {p['message']}" for p in row.problems),
            ", ".join(f"{key}={value}" for key, value in row.hints.items()),
            _excerpt(row.raw_body),
        )
    return table


def _excerpt(text: str | None, limit: int = 120) -> str:
    if not text:
        return "(empty)"
    return text if len(text) <= limit else text[: limit - 1] + "…"


@integrations_app.command("pending")
def integrations_pending(ctx: typer.Context) -> None:
    """List lifecycle callbacks that were stored but could not be applied."""

    async def work(sessionmaker: async_sessionmaker[AsyncSession], _box: SecretBox | None) -> Any:
        service = _integration_service(ctx, sessionmaker)
        async with transaction(sessionmaker) as session:
            return [service.to_held_out(event) for event in await service.list_held(session)]

    held = _run(work)
    if not held:
        console.print("no integration callbacks need review", highlight=False)
        return
    console.print(_held_table(held))


@integrations_app.command("resolve")
def integrations_resolve(
    ctx: typer.Context,
    held_id: int = HELD_ID_ARGUMENT,
    action: str = typer.Option(..., "--action", help="created, updated or deleted"),
    integration_id: str | None = typer.Option(
        None, "--integration-id", help="Default: the id read from the callback"
    ),
    name: str | None = NAME_OPTION,
    account: str | None = ACCOUNT_OPTION,
    channel_provider: str | None = CHANNEL_PROVIDER_OPTION,
) -> None:
    """Apply the change a held callback meant (the same path as the callbacks and the API)."""
    data = _validate(
        HeldCallbackResolve,
        {
            "action": action,
            "integration_id": integration_id,
            "name": name,
            "account_id": account,
            "channel_provider_id": channel_provider,
        },
    )

    async def work(sessionmaker: async_sessionmaker[AsyncSession], _box: SecretBox | None) -> Any:
        return await _integration_service(ctx, sessionmaker).resolve_held(
            held_id=held_id, resolution=data, source="cli"
        )

    change = _run(work)
    console.print(
        f"held callback {held_id} resolved: integration {change.integration_id} {change.action}; "
        f"{len(change.delivery_ids)} mirror deliveries queued",
        highlight=False,
    )
    for nexus_channel_id in change.disabled_channels:
        console.print(f"  channel {nexus_channel_id} disabled", highlight=False)


@integrations_app.command("dismiss")
def integrations_dismiss(
    ctx: typer.Context,
    held_id: int = HELD_ID_ARGUMENT,
    reason: str | None = typer.Option(None, "--reason", help="Kept in the inbox event's note"),
) -> None:
    """Close a held callback without applying anything."""

    async def work(sessionmaker: async_sessionmaker[AsyncSession], _box: SecretBox | None) -> Any:
        async with transaction(sessionmaker) as session:
            return await _integration_service(ctx, sessionmaker).dismiss_held(
                session, held_id=held_id, reason=reason, source="cli"
            )

    held = _run(work)
    console.print(f"held callback {held_id} dismissed ({held.note})", highlight=False)


@secrets_app.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt every stored secret under the first BRIDGE_SECRET_KEY (docs/operations.md)."""

    async def work(
        sessionmaker: async_sessionmaker[AsyncSession], box: SecretBox | None
    ) -> tuple[RotationReport, int]:
        if box is None:
            _print_error("BRIDGE_SECRET_KEY is not set: there is no key to encrypt with", [])
            raise typer.Exit(2)
        return await rotate_stored_secrets(sessionmaker, box), box.key_count

    report, keys = _run(work)
    if report.unreadable:
        _print_error(
            "nothing changed: no configured BRIDGE_SECRET_KEY decrypts the secrets of "
            + ", ".join(report.unreadable),
            [],
        )
        raise typer.Exit(1)
    console.print(
        f"re-encrypted {report.secrets} secrets of {report.channels} channels "
        f"with the first of {keys} keys",
        highlight=False,
    )
