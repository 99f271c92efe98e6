"""`channel-bridge`: serve, migrate, check-config, and the operator command groups."""

from __future__ import annotations

import json

import typer

from channel_bridge.settings import ConfigError, Settings

app = typer.Typer(
    help="channel-bridge: AXP Custom Messaging <-> Genesys Nexus Async bridge",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def load_settings() -> Settings:
    """Settings, or exit 2 with one line naming the unusable variable."""
    try:
        settings = Settings()
        settings.ensure_usable()
    except ConfigError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from None
    except Exception as exc:  # pydantic validation of a malformed value
        first = str(exc).splitlines()
        typer.echo(f"configuration error: {' '.join(first[:3])}", err=True)
        raise typer.Exit(2) from None
    return settings


@app.command()
def serve(
    host: str = typer.Option("0.0.0.0", help="Interface to bind"),
    port: int = typer.Option(8080, help="Port to bind"),
    workers: int = typer.Option(1, help="Worker processes"),
) -> None:
    """Serve the bridge (HTTP API, webhooks, relay worker)."""
    import uvicorn

    load_settings()
    uvicorn.run(
        "channel_bridge.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # Behind an HTTPS ingress the client address and scheme come from X-Forwarded-*.
        proxy_headers=True,
        forwarded_allow_ips="*",
        log_config=None,
        access_log=False,
    )


@app.command()
def migrate(revision: str = typer.Argument("head")) -> None:
    """Apply database migrations (alembic upgrade)."""
    from channel_bridge.db.migrate import upgrade

    settings = load_settings()
    upgrade(settings.database_url, revision)
    typer.echo(f"database migrated to {revision}")


@app.command("check-config")
def check_config() -> None:
    """Print the effective settings (secrets masked); exit non-zero if unusable."""
    try:
        settings = Settings()
    except Exception as exc:
        typer.echo(f"configuration error: {' '.join(str(exc).splitlines()[:3])}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(settings.masked(), indent=2, default=str))
    problems = settings.problems()
    for problem in problems:
        typer.echo(f"configuration error: {problem}", err=True)
    if problems:
        raise typer.Exit(2)


@app.command()
def demo(
    backend: str = typer.Option(
        "nexus", "--backend", help="The Genesys side: nexus | genesys-cloud"
    ),
) -> None:
    """Run a scripted conversation through the bridge with simulated upstreams, hop by hop."""
    from channel_bridge.sandbox.demo import main as run_demo

    if backend not in ("nexus", "genesys-cloud"):
        typer.echo("error: --backend is nexus or genesys-cloud", err=True)
        raise typer.Exit(2)
    raise typer.Exit(run_demo(backend=backend))


# --- command groups (each owned by its package) -------------------------------------
from channel_bridge.mappings.cli import channels_app, integrations_app  # noqa: E402

app.add_typer(channels_app, name="channels")
app.add_typer(integrations_app, name="integrations")
from channel_bridge.platforms.nexus.cli import app as nexus_app  # noqa: E402

app.add_typer(nexus_app, name="nexus")
from channel_bridge.platforms.genesys_cloud.cli import app as genesys_cloud_app  # noqa: E402

app.add_typer(genesys_cloud_app, name="genesys-cloud")
from channel_bridge.platforms.axp.cli import axp_app  # noqa: E402

app.add_typer(axp_app, name="axp")
from channel_bridge.platforms.axp.admin_cli import register_admin_commands  # noqa: E402

register_admin_commands(axp_app)
from channel_bridge.platforms.akixi.cli import akixi_app  # noqa: E402

app.add_typer(akixi_app, name="akixi")
from channel_bridge.relay.cli import deliveries_app, worker_command  # noqa: E402

app.add_typer(deliveries_app, name="deliveries")
app.command("worker")(worker_command)


def main() -> None:
    app(prog_name="channel-bridge")


if __name__ == "__main__":
    main()
