"""`channel-bridge`: serve, migrate, check-config, and the operator command groups."""

from __future__ import annotations

import asyncio
import json
import os

import typer

from channel_bridge.startup import (
    EXIT_FAULT,
    FaultReportingGroup,
    check_database,
    example_values,
    load_settings,
)

app = typer.Typer(
    cls=FaultReportingGroup,
    help="channel-bridge: AXP Custom Messaging <-> Genesys Nexus Async bridge",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

__all__ = ["app", "load_settings", "main"]


@app.callback()
def compose(ctx: typer.Context) -> None:
    # The commands' composition point: what a sub-CLI needs but may not import itself.
    from channel_bridge.bridge.integrations import IntegrationDeliveries
    from channel_bridge.cli_support import CommandContext

    ctx.obj = CommandContext(integration_change=IntegrationDeliveries())


@app.command()
def serve(
    # Loopback unless asked: the image passes --host 0.0.0.0 (with real secrets, prod).
    host: str = typer.Option("127.0.0.1", help="Interface to bind (0.0.0.0: every interface)"),
    port: int = typer.Option(8080, help="Port to bind"),
    workers: int | None = typer.Option(
        None, help="Worker processes (default BRIDGE_SERVE_WORKERS, 1)"
    ),
) -> None:
    """Serve the bridge (HTTP API, webhooks, relay worker)."""
    import uvicorn

    settings = load_settings(bind_host=host)
    if settings.env == "dev" and "public_base_url" not in settings.model_fields_set:
        # Unset in dev: where this server really listens (callbacks, banner, sandbox URLs).
        os.environ["BRIDGE_PUBLIC_BASE_URL"] = f"http://localhost:{port}"
    # Every fault uvicorn would print as a traceback is found first, as one line.
    asyncio.run(check_database(settings))
    uvicorn.run(
        "channel_bridge.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers or settings.serve_workers,
        # The C event loop and HTTP parser (both dependencies): with uvicorn's "auto" a broken
        # install would fall back to asyncio and h11 silently, at about half the speed.
        loop="uvloop",
        http="httptools",
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
def check_config(
    offline: bool = typer.Option(
        False, "--offline", help="Skip the database and upstream connections"
    ),
) -> None:
    """Print the effective settings (secrets masked), then test the database and each
    configured upstream; exit 2 with one line per problem if the configuration is unusable."""
    from channel_bridge.bridge.wiring import relaying_gaps

    settings = load_settings(usable=False)  # its problems are listed below, all of them
    typer.echo(json.dumps(settings.masked(), indent=2, default=str))
    problems = [
        f"configuration error: {problem}"
        for problem in [*settings.problems(), *example_values(settings)]
    ]
    gaps = [] if settings.sandbox_mode else relaying_gaps(settings)
    if settings.env == "prod":
        problems += [f"configuration error: {gap} (the bridge relays to it)" for gap in gaps]
    else:
        for gap in gaps:
            typer.echo(f"warning: {gap}: nothing is relayed until it is", err=True)
    for problem in problems:
        typer.echo(problem, err=True)
    failed = bool(problems)
    if not offline and not failed:
        from channel_bridge.preflight import run_checks

        for result in asyncio.run(run_checks(settings)):
            typer.echo(result.line(), err=True)
            failed = failed or not result.ok
    if failed:
        raise typer.Exit(EXIT_FAULT)


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
from channel_bridge.mappings.cli import channels_app, integrations_app, secrets_app  # noqa: E402

app.add_typer(channels_app, name="channels")
app.add_typer(integrations_app, name="integrations")
app.add_typer(secrets_app, name="secrets")
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
from channel_bridge.relay.cli import deliveries_app, run_event_loop  # noqa: E402

app.add_typer(deliveries_app, name="deliveries")


@app.command("worker")
def worker() -> None:
    """Run the relay worker alone (no HTTP): same destinations and housekeeping as `serve`."""
    import signal

    from rich.console import Console

    settings = load_settings().model_copy(update={"worker_enabled": True})
    asyncio.run(check_database(settings))  # an unreachable or unmigrated database: one line

    async def run() -> None:
        # The app's lifespan builds the registry and every component that registers a
        # destination, so a separate worker delivers exactly what `serve` would.
        from channel_bridge.app import create_app

        app = create_app(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with app.router.lifespan_context(app):
            worker = app.state_now.worker
            assert worker is not None  # worker_enabled above
            Console().print(f"relay worker {worker.worker_id} running; Ctrl-C to stop")
            await stop.wait()

    run_event_loop(run())


def main() -> None:
    app(prog_name="channel-bridge")


if __name__ == "__main__":
    main()
