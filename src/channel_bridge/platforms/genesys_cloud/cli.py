"""`channel-bridge genesys-cloud provision`: an Open Messaging integration for the bridge."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import sqlalchemy.exc
import typer

from channel_bridge.cli_support import command_settings, fail
from channel_bridge.errors import BridgeError
from channel_bridge.mappings.schemas import ChannelCreate
from channel_bridge.mappings.service import ChannelService
from channel_bridge.platforms.genesys_cloud.client import (
    GenesysCloudClient,
    build_genesys_cloud_http,
    genesys_cloud_configured,
)
from channel_bridge.platforms.genesys_cloud.errors import GenesysCloudApiError
from channel_bridge.platforms.genesys_cloud.provisioning import (
    INTEGRATIONS_NOTE,
    ProvisioningError,
    create_integration,
    integration_request,
    new_secret_token,
    point_webhook,
)
from channel_bridge.platforms.genesys_cloud.schemas import dump
from channel_bridge.security import SecretBox
from channel_bridge.settings import Settings

app = typer.Typer(help="Genesys Cloud Open Messaging: provisioning", no_args_is_help=True)


@app.command()
def provision(
    name: str = typer.Option(..., "--name", help="The integration's name in Genesys Cloud"),
    integration: str = typer.Option(..., "--integration", "-i", help="AXP integration id"),
    identifier_key: str = typer.Option(
        "phoneNumbers",
        "--identifier-key",
        help="Customer Journey identifier for the customer address",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the request (secret masked); send and store nothing"
    ),
) -> None:
    """Create the Open Messaging integration whose webhook is this bridge, and its channel."""
    settings = command_settings()
    secret_token = new_secret_token()
    try:
        request = integration_request(name, settings.public_base_url, secret_token)
    except ProvisioningError as exc:
        raise fail(str(exc)) from None
    shown: dict[str, Any] = dump(request)
    shown["outboundNotificationWebhookSignatureSecretToken"] = "**********"
    typer.echo("POST /api/v2/conversations/messaging/integrations/open", err=True)
    typer.echo(json.dumps(shown, indent=2))
    if dry_run:
        return
    missing = [
        variable
        for variable, ok in (
            ("BRIDGE_GENESYS_CLOUD_CLIENT_ID/SECRET", genesys_cloud_configured(settings)),
            ("BRIDGE_SECRET_KEY", settings.secret_key is not None),
        )
        if not ok
    ]
    if missing:
        raise fail(f"{', '.join(missing)} must be set to provision Genesys Cloud")
    try:
        result = asyncio.run(_provision(settings, request, integration, identifier_key))
    except (ProvisioningError, GenesysCloudApiError, BridgeError) as exc:
        raise fail(str(getattr(exc, "detail", None) or exc)) from None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise fail(
            f"database not usable ({type(exc).__name__}): check BRIDGE_DATABASE_URL and run "
            "`channel-bridge migrate`"
        ) from None
    typer.echo(
        f"integration {result.integration_id} provisioned; webhook {result.webhook_url}",
        err=True,
    )


async def _provision(settings: Settings, request: Any, axp_integration: str, key: str) -> Any:
    from channel_bridge.db.engine import create_engine, create_sessionmaker, transaction

    assert settings.secret_key is not None
    engine = create_engine(settings)
    try:
        async with build_genesys_cloud_http(settings) as http:
            client = GenesysCloudClient(http)
            integration_id = await create_integration(client, request)
            service = ChannelService(secret_box=SecretBox(settings.secret_key))
            data = ChannelCreate(
                nexus_channel_id=integration_id,
                backend="genesys-cloud",
                axp_integration_id=axp_integration,
                customer_identifier_key=key,
                webhook_secret=request.outboundNotificationWebhookSignatureSecretToken,
            )
            try:
                async with transaction(create_sessionmaker(engine)) as session:
                    await service.create(session, data)
            except BridgeError as exc:
                raise ProvisioningError(
                    f"integration {integration_id} was created in Genesys Cloud but its channel "
                    f"could not be stored ({exc.detail}); {INTEGRATIONS_NOTE}"
                ) from None
            return await point_webhook(
                client, integration_id, settings.public_base_url, name=request.name
            )
    finally:
        await engine.dispose()
