"""`channel-bridge axp …`: operator commands for AXP.

`axp_app` is the group; other AXP modules add their own sub-groups with
`axp_app.add_typer(their_app, name="...")`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from channel_bridge.cli_support import command_settings, in_transaction
from channel_bridge.platforms.axp.errors import AxpApiError
from channel_bridge.settings import ConfigError, Settings

T = TypeVar("T")

axp_app = typer.Typer(help="AXP (Avaya Experience Platform) operations", no_args_is_help=True)
subscriptions_app = typer.Typer(help="Digital webhook subscriptions", no_args_is_help=True)
axp_app.add_typer(subscriptions_app, name="subscriptions")


def _run(settings: Settings, action: Callable[[Any], Awaitable[T]]) -> T:
    """Run `action(platform)` against AXP; exit 2 on configuration, 1 on AXP errors."""
    from channel_bridge.ops.logging import configure_logging
    from channel_bridge.platforms.axp.platform import AxpPlatform

    # Logs go to stderr so stdout stays machine-readable JSON.
    configure_logging(
        level=settings.log_level,
        fmt=settings.effective_log_format,
        secret_values=settings.secret_values(),
    )

    async def main() -> T:
        platform = AxpPlatform.from_settings(settings)
        try:
            return await action(platform)
        finally:
            await platform.aclose()

    try:
        return asyncio.run(main())
    except ConfigError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from None
    except AxpApiError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


def _print(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


@subscriptions_app.command("list")
def list_subscriptions(
    channel_provider_id: str | None = typer.Option(None, help="Only this channel provider"),
) -> None:
    """List the account's digital webhook subscriptions."""
    settings = command_settings(upstream=True)

    async def action(platform: Any) -> list[dict[str, Any]]:
        found = await platform.subscriptions.list(channel_provider_id)
        return [s.model_dump(mode="json") for s in found]

    _print(_run(settings, action))


@subscriptions_app.command("ensure")
def ensure_subscriptions(
    channel_provider_id: list[str] = typer.Argument(
        None, help="Channel provider ids; default: every one known in the database"
    ),
) -> None:
    """Create or repair our subscription for each channel provider (idempotent)."""
    settings = command_settings(upstream=True)

    async def action(platform: Any) -> dict[str, Any]:
        providers = list(channel_provider_id or []) or await _known_providers(settings)
        if not providers:
            typer.echo("no channel provider ids given or known in the database", err=True)
        result: dict[str, Any] = {}
        for provider in providers:
            subscription = await platform.subscriptions.ensure_subscription(
                provider, platform.callback_url, platform.event_types
            )
            result[provider] = subscription.model_dump(mode="json")
        return result

    _print(_run(settings, action))


@subscriptions_app.command("delete")
def delete_subscription(subscription_id: str = typer.Argument(..., help="subscriptionId")) -> None:
    """Delete one subscription (the reconcile loop recreates ours unless its provider is gone)."""
    settings = command_settings(upstream=True)

    async def action(platform: Any) -> None:
        await platform.subscriptions.delete(subscription_id)

    _run(settings, action)
    typer.echo(f"deleted {subscription_id}")


async def _known_providers(settings: Settings) -> list[str]:
    from channel_bridge.mappings.repository import IntegrationRepository

    async def read(session: AsyncSession) -> list[str]:
        return await IntegrationRepository(session).known_channel_provider_ids(
            account_id=settings.axp_account_id
        )

    return await in_transaction(settings, read)
