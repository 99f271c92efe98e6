"""create_app(settings) -> FastAPI; its lifespan owns the engine, HTTP clients and tasks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from structlog.contextvars import bound_contextvars

from channel_bridge import __version__
from channel_bridge.bridge.wiring import install_planners, register_destinations
from channel_bridge.console import router as console_router
from channel_bridge.db.engine import create_engine, create_sessionmaker
from channel_bridge.db.notifications import DatabaseNotifications
from channel_bridge.errors import (
    PROBLEM_CONTENT_TYPE,
    BridgeError,
    field_errors_from_pydantic,
    problem_body,
)
from channel_bridge.mappings import router as mappings_router
from channel_bridge.mappings.channel_cache import ChannelCache
from channel_bridge.ops import health
from channel_bridge.ops.api_docs import install_api_docs
from channel_bridge.ops.body_limit import BodyLimitMiddleware
from channel_bridge.ops.fast_path import FastPathMiddleware, fast_routes
from channel_bridge.ops.gc_tuning import tuned_gc
from channel_bridge.ops.logging import configure_logging, get_logger
from channel_bridge.ops.metrics import MetricsMiddleware
from channel_bridge.ops.request_context import RequestContextMiddleware, safe_request_id
from channel_bridge.outbound import build_client
from channel_bridge.platforms.akixi.client import AkixiClient
from channel_bridge.platforms.axp import admin_router as axp_admin_router
from channel_bridge.platforms.axp import lifecycle as axp_lifecycle
from channel_bridge.platforms.axp import router as axp_router
from channel_bridge.platforms.axp.platform import start_axp_platform
from channel_bridge.platforms.genesys_cloud import router as genesys_cloud_router
from channel_bridge.platforms.nexus import router as nexus_router
from channel_bridge.relay import router as relay_router
from channel_bridge.relay import service as relay_service
from channel_bridge.relay.destinations import DestinationRegistry
from channel_bridge.relay.inbox import Inbox
from channel_bridge.relay.maintenance import Housekeeping
from channel_bridge.relay.worker import RelayWorker
from channel_bridge.sandbox.akixi import start_akixi_sandbox
from channel_bridge.sandbox.mode import prepare_sandbox, sandbox_settings, start_sandbox
from channel_bridge.security import SecretBox
from channel_bridge.settings import Settings

log = get_logger(__name__)

# Errors that mean "the database is not reachable right now": answered 503, so senders retry.
DATABASE_UNAVAILABLE = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    settings.ensure_usable()
    if settings.sandbox_mode:
        settings = sandbox_settings(settings)
    configure_logging(
        level=settings.log_level,
        fmt=settings.effective_log_format,
        secret_values=settings.secret_values(),
        logger_levels=settings.log_levels,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            engine = create_engine(settings)
            stack.push_async_callback(engine.dispose)
            # Nexus and Akixi (AXP has a client of its own, with its token auth).
            http = build_client(settings)
            stack.push_async_callback(http.aclose)
            app.state.engine = engine
            app.state.sessionmaker = create_sessionmaker(engine)
            # One LISTEN connection for the process: deliveries queued, channel mappings written.
            notifications = DatabaseNotifications(engine.url)
            stack.push_async_callback(notifications.close)
            app.state.notifications = notifications
            app.state.channel_cache = ChannelCache(
                app.state.sessionmaker, ttl_s=settings.channel_cache_ttl_s
            )
            await app.state.channel_cache.listen(notifications)
            app.state.http = http
            app.state.destinations = DestinationRegistry()
            # Relay worker (BRIDGE_WORKER_ENABLED): woken in-process by every accept that queues.
            app.state.worker = (
                RelayWorker(
                    app.state.sessionmaker,
                    app.state.destinations,
                    settings,
                    notifications=notifications,
                )
                if settings.worker_enabled
                else None
            )
            app.state.inbox = Inbox(
                app.state.sessionmaker,
                on_accepted=app.state.worker.wake if app.state.worker else None,
                window_ms=settings.inbox_group_commit_window_ms,
                max_batch=settings.inbox_group_commit_max_batch,
                max_inflight=settings.inbox_group_commit_max_inflight,
            )
            stack.push_async_callback(app.state.inbox.drain)  # batches in progress finish first
            app.state.exit_stack = stack
            app.state.readiness_detail = relay_service.readiness_detail
            # Hooks the bridge wiring sets: which deliveries an inbound event becomes.
            # Until set, an inbound event is stored and acknowledged but not relayed.
            app.state.axp_event_planner = None
            app.state.nexus_message_planner = None
            app.state.genesys_cloud_message_planner = None
            # --- components (each adds itself here; keep one line or block each) ---------
            await start_axp_platform(app, settings, stack)
            # Akixi mirror: the configured service, else the in-process simulator in sandbox mode.
            app.state.akixi_simulator = None
            akixi: tuple[AkixiClient, Settings] | None = None
            if settings.akixi_url or settings.sandbox_mode:
                akixi_settings, akixi_http = settings, http
                if not settings.akixi_url:
                    akixi_sandbox = await start_akixi_sandbox(settings, stack)
                    app.state.akixi_simulator, akixi_settings, akixi_http = akixi_sandbox
                akixi = (AkixiClient(akixi_http, akixi_settings), akixi_settings)
            # Simulated upstreams (dev only), then the bridge wiring between the platforms.
            if sandbox is not None:
                await start_sandbox(app, settings, sandbox, stack)
            install_planners(app, settings)
            register_destinations(
                app,
                settings,
                axp=app.state.axp,
                akixi=akixi,
                nexus_http=sandbox.nexus_http if sandbox else None,
                genesys_cloud_transport=sandbox.genesys_cloud_transport if sandbox else None,
            )
            await notifications.ensure_connected()
            listening = asyncio.create_task(notifications.keep_connected(), name="db-listen")
            stack.push_async_callback(_cancel, listening)
            # Relay worker and housekeeping (retention, outbox gauges); stopped before the engine.
            if app.state.worker is not None:
                housekeeping = Housekeeping(app.state.sessionmaker, settings)
                await housekeeping.start()
                stack.push_async_callback(housekeeping.stop)
                await app.state.worker.start()
                stack.push_async_callback(app.state.worker.stop)
            # Last, so everything start-up built is frozen out of the collector's walks.
            stack.enter_context(tuned_gc(settings.gc_gen0_threshold))
            log.info(
                "bridge starting",
                version=__version__,
                env=settings.env,
                database=settings.database_url.split("://", 1)[0],
                sandbox=settings.sandbox_mode,
            )
            yield
            log.info("bridge stopping")

    app = FastAPI(
        title="channel-bridge",
        version=__version__,
        summary="AXP Custom Messaging <-> Genesys Nexus Async bridge",
        lifespan=lifespan,
        docs_url=None,  # served by install_api_docs, from local assets
        redoc_url=None,
    )
    install_api_docs(app)
    app.state.settings = settings
    app.state.secret_box = SecretBox(settings.secret_key) if settings.secret_key else None
    _install_error_handlers(app)
    sandbox = prepare_sandbox(app, settings) if settings.sandbox_mode else None
    app.include_router(health.router)
    # --- routers (one line each) ---------------------------------------------------
    app.include_router(axp_lifecycle.router)
    app.include_router(mappings_router.channels_router)
    app.include_router(mappings_router.integrations_router)
    app.include_router(axp_router.router)
    app.include_router(axp_admin_router.router)
    app.include_router(nexus_router.router)
    app.include_router(genesys_cloud_router.router)
    app.include_router(relay_router.router)
    app.include_router(relay_router.destinations_router)
    app.include_router(console_router.router)

    # Middleware order: the last added runs first. The webhook routes are called directly
    # (ops/fast_path.py), inside the request id, metrics and body limit.
    webhook_routes = [
        *fast_routes(nexus_router.router.routes),
        *fast_routes(genesys_cloud_router.router.routes),
        *fast_routes(axp_router.router.routes),
    ]
    app.add_middleware(FastPathMiddleware, routes=webhook_routes)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(RequestContextMiddleware)
    return app


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and `channel-bridge serve`."""
    return create_app(Settings())


def _problem(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=PROBLEM_CONTENT_TYPE, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BridgeError)
    async def _bridge_error(_request: Request, exc: BridgeError) -> JSONResponse:
        return _problem(exc.status, exc.to_problem(), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = field_errors_from_pydantic(list(exc.errors()))
        return _problem(
            422,
            problem_body(
                422,
                "Unprocessable content",
                "The request is not valid",
                slug="validation-error",
                errors=errors,
            ),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "Request failed"
        return _problem(
            exc.status_code, problem_body(exc.status_code, detail, detail), dict(exc.headers or {})
        )

    for error_type in DATABASE_UNAVAILABLE:

        @app.exception_handler(error_type)
        async def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
            log.warning("database unavailable", error=type(exc).__name__)
            return _problem(
                503,
                problem_body(
                    503,
                    "Service unavailable",
                    "The database is not reachable; retry later",
                    slug="database-unavailable",
                ),
                {"Retry-After": "5"},
            )

    @app.exception_handler(sqlalchemy.exc.DBAPIError)
    async def _database_error(request: Request, exc: Exception) -> JSONResponse:
        # A connection dropped mid-statement (asyncpg's ConnectionDoesNotExistError) arrives as
        # a plain DBAPIError with connection_invalidated set: an outage, not a bug (the
        # database-outage drill).
        if getattr(exc, "connection_invalidated", False):
            return await _database_unavailable(request, exc)
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette renders this in its outermost middleware, after the request context has
        # closed: bring the request id back for the log line and the response header.
        request_id = request.scope.get("state", {}).get("request_id") or safe_request_id(
            request.headers.get("x-request-id")
        )
        with bound_contextvars(request_id=request_id):
            log.exception("unhandled error", error=type(exc).__name__)
        return _problem(
            500,
            problem_body(
                500, "Internal error", "An unexpected error occurred", slug="internal-error"
            ),
            {"X-Request-ID": request_id},
        )
