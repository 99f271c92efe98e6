"""create_app(settings) -> FastAPI; its lifespan owns the engine, HTTP clients and tasks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send
from structlog.contextvars import bound_contextvars

from channel_bridge import __version__
from channel_bridge.bridge.wiring import planners, register_destinations
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
from channel_bridge.ops.fast_path import FastRoutes, fast_routes
from channel_bridge.ops.gc_tuning import tuned_gc
from channel_bridge.ops.logging import configure_logging, get_logger
from channel_bridge.ops.metrics import MetricsMiddleware
from channel_bridge.ops.request_context import RequestContextMiddleware, safe_request_id
from channel_bridge.outbound import build_client
from channel_bridge.platforms.akixi.client import AkixiClient
from channel_bridge.platforms.axp import admin_router as axp_admin_router
from channel_bridge.platforms.axp import lifecycle as axp_lifecycle
from channel_bridge.platforms.axp import router as axp_router
from channel_bridge.platforms.axp.admin import AxpAdmin
from channel_bridge.platforms.axp.platform import start_axp_platform
from channel_bridge.platforms.genesys_cloud import router as genesys_cloud_router
from channel_bridge.platforms.nexus import router as nexus_router
from channel_bridge.relay import router as relay_router
from channel_bridge.relay import service as relay_service
from channel_bridge.relay.ack_priority import AckPriority, watch_loop_lag
from channel_bridge.relay.destinations import DestinationRegistry
from channel_bridge.relay.inbox import Inbox
from channel_bridge.relay.maintenance import Housekeeping
from channel_bridge.relay.worker import RelayWorker
from channel_bridge.sandbox.akixi import AkixiSimulator, start_akixi_sandbox
from channel_bridge.sandbox.mode import Sandbox, prepare_sandbox, sandbox_settings, start_sandbox
from channel_bridge.security import SecretBox
from channel_bridge.settings import Settings
from channel_bridge.state import LifespanState, State

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


# How long the direct path trusts its last look at FastAPI's native telemetry.
TELEMETRY_RECHECK_S = 1.0


class BridgeApp(FastAPI):
    """The application: its settings and simulators, fixed before start-up, and while the
    lifespan runs the `State` it built.

    Routes read that State from `request.state` (`deps.py`), where Starlette puts what the
    lifespan yields. An in-process caller that runs no ASGI lifespan of its own (httpx's
    ASGITransport: tests, the sandbox's simulated AXP calling back) gets the same State here.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        axp_transport: httpx.AsyncBaseTransport | None = None,
        **options: Any,
    ) -> None:
        super().__init__(lifespan=_lifespan, **options)
        self.settings = settings
        self.secret_box = SecretBox(settings.secret_key) if settings.secret_key else None
        self.axp_transport = axp_transport
        self.sandbox: Sandbox | None = None
        self.running: State | None = None
        # The webhook routes, served before the middleware stack (ops/fast_path.py).
        self.fast_routes: FastRoutes | None = None
        self._telemetry_on = False
        self._telemetry_checked_until = float("-inf")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            if self.running is not None:
                scope.setdefault("state", {}).setdefault("bridge", self.running)
            if (
                scope["type"] == "http"
                and self.fast_routes is not None
                and (matched := self.fast_routes.match(scope)) is not None
                and self._serves_directly(scope)
            ):
                scope["app"] = self
                await self.fast_routes.serve(scope, receive, send, matched, self.exception_handlers)
                return
        await super().__call__(scope, receive, send)

    def _serves_directly(self, scope: Scope) -> bool:
        # What FastRoutes does not reproduce goes through the whole stack: the debug
        # traceback page, a root path (the router strips it before matching), and FastAPI's
        # native OpenTelemetry, on only when a provider is configured.
        if self.debug or self.root_path or scope.get("root_path"):
            return False
        return not self._native_telemetry_on()

    def _native_telemetry_on(self) -> bool:
        # FastAPI's check reads the OpenTelemetry globals and os.environ on every call (1.5 %
        # of a webhook's CPU). A provider is set once, at start-up, and never unset: the
        # answer is kept for a second, and for good once it is yes.
        now = time.monotonic()
        if self._telemetry_on or now < self._telemetry_checked_until:
            return self._telemetry_on
        telemetry = getattr(self, "_native_telemetry", None)
        self._telemetry_on = telemetry is not None and telemetry.enabled()
        self._telemetry_checked_until = now + TELEMETRY_RECHECK_S
        return self._telemetry_on

    @property
    def state_now(self) -> State:
        """The running State (for the CLI, the demo and tests); raises before start-up."""
        if self.running is None:
            raise RuntimeError("the app's lifespan is not running")
        return self.running


def create_app(
    settings: Settings | None = None, *, axp_transport: httpx.AsyncBaseTransport | None = None
) -> BridgeApp:
    """The application; `axp_transport` reaches a simulated AXP in process (tests)."""
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
    app = BridgeApp(
        settings,
        axp_transport=axp_transport,
        title="channel-bridge",
        version=__version__,
        summary="AXP Custom Messaging <-> Genesys Nexus Async bridge",
        docs_url=None,  # served by install_api_docs, from local assets
        redoc_url=None,
    )
    install_api_docs(app)
    _install_error_handlers(app)
    if settings.sandbox_mode:
        app.sandbox = prepare_sandbox(app, settings)
        app.axp_transport = app.sandbox.axp_transport
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

    # The webhook routes are served before this stack, with the same request id, metrics,
    # body limit and error answers in one layer (ops/fast_path.py).
    app.fast_routes = FastRoutes(
        [
            *fast_routes(nexus_router.router.routes),
            *fast_routes(genesys_cloud_router.router.routes),
            *fast_routes(axp_router.router.routes),
        ],
        max_body_bytes=settings.max_body_bytes,
    )
    # Middleware order: the last added runs first.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(RequestContextMiddleware)
    return app


@contextlib.asynccontextmanager
async def _lifespan(fastapi_app: FastAPI) -> AsyncIterator[LifespanState]:
    """The composition point: every component built once, closed in reverse order."""
    assert isinstance(fastapi_app, BridgeApp)
    app, settings, secret_box, sandbox = (
        fastapi_app,
        fastapi_app.settings,
        fastapi_app.secret_box,
        fastapi_app.sandbox,
    )
    async with contextlib.AsyncExitStack() as stack:
        engine = create_engine(settings)
        stack.push_async_callback(engine.dispose)
        # Nexus and Akixi (AXP has a client of its own, with its token auth).
        http = build_client(settings)
        stack.push_async_callback(http.aclose)
        sessionmaker = create_sessionmaker(engine)
        # One LISTEN connection for the process: deliveries queued, channel mappings written.
        notifications = DatabaseNotifications(engine.url)
        stack.push_async_callback(notifications.close)
        channel_cache = ChannelCache(sessionmaker, ttl_s=settings.channel_cache_ttl_s)
        await channel_cache.listen(notifications)
        destinations = DestinationRegistry()
        # Relay worker (BRIDGE_WORKER_ENABLED): woken in-process by every accept that queues.
        # On one event loop with the inbox, the worker yields to acknowledgements while the
        # loop runs late (relay/ack_priority.py).
        ack_priority = (
            AckPriority(
                target_s=settings.worker_loop_lag_target_ms / 1000,
                floor=settings.worker_ack_priority_floor,
                ack_budget_s=settings.worker_ack_budget_ms / 1000,
            )
            if settings.worker_enabled and settings.worker_loop_lag_target_ms > 0
            else None
        )
        worker = (
            RelayWorker(
                sessionmaker,
                destinations,
                settings,
                notifications=notifications,
                ack_priority=ack_priority,
            )
            if settings.worker_enabled
            else None
        )
        inbox = Inbox(
            sessionmaker,
            on_accepted=worker.wake if worker else None,
            on_acked=ack_priority.acked if ack_priority else None,
            window_ms=settings.inbox_group_commit_window_ms,
            max_batch=settings.inbox_group_commit_max_batch,
            max_inflight=settings.inbox_group_commit_max_inflight,
        )
        stack.push_async_callback(inbox.drain)  # batches in progress finish first
        # --- components (each adds itself here; keep one line or block each) ---------
        axp = await start_axp_platform(
            settings, stack, sessionmaker=sessionmaker, transport=app.axp_transport
        )
        axp_admin = AxpAdmin.from_settings(axp.http, settings) if axp is not None else None
        # Akixi mirror: the configured service, else the in-process simulator in sandbox mode.
        akixi_simulator: AkixiSimulator | None = None
        akixi: tuple[AkixiClient, Settings] | None = None
        if settings.akixi_url or settings.sandbox_mode:
            akixi_settings, akixi_http = settings, http
            if not settings.akixi_url:
                akixi_simulator, akixi_settings, akixi_http = await start_akixi_sandbox(
                    settings, stack
                )
            akixi = (AkixiClient(akixi_http, akixi_settings), akixi_settings)
        # Simulated upstreams (dev only), then the bridge wiring between the platforms.
        if sandbox is not None:
            assert secret_box is not None  # sandbox settings always carry a secret key
            await start_sandbox(
                app,
                settings,
                sandbox,
                stack,
                sessionmaker=sessionmaker,
                secret_box=secret_box,
                akixi_simulator=akixi_simulator,
            )
        wiring = register_destinations(
            destinations,
            settings,
            stack,
            sessionmaker=sessionmaker,
            secret_box=secret_box,
            channels=channel_cache,
            http=http,
            readiness_detail=relay_service.readiness_detail,
            axp=axp,
            akixi=akixi,
            nexus_http=sandbox.nexus_http if sandbox else None,
            genesys_cloud_transport=sandbox.genesys_cloud_transport if sandbox else None,
        )
        state = State(
            settings=settings,
            secret_box=secret_box,
            engine=engine,
            sessionmaker=sessionmaker,
            http=http,
            channel_cache=channel_cache,
            destinations=destinations,
            inbox=inbox,
            worker=worker,
            planners=planners(settings),
            readiness_detail=wiring.readiness_detail,
            axp=axp,
            axp_admin=axp_admin,
            sandbox=sandbox,
            akixi_simulator=akixi_simulator,
        )
        await notifications.ensure_connected()
        listening = asyncio.create_task(notifications.keep_connected(), name="db-listen")
        stack.push_async_callback(_cancel, listening)
        # Relay worker and housekeeping (retention, outbox gauges); stopped before the engine.
        if worker is not None:
            housekeeping = Housekeeping(sessionmaker, settings)
            await housekeeping.start()
            stack.push_async_callback(housekeeping.stop)
            await worker.start()
            stack.push_async_callback(worker.stop)
        if ack_priority is not None:
            lag = asyncio.create_task(watch_loop_lag(ack_priority), name="loop-lag")
            stack.push_async_callback(_cancel, lag)
        # Last, so everything start-up built is frozen out of the collector's walks.
        stack.enter_context(tuned_gc(settings.gc_gen0_threshold))
        app.running = state
        log.info(
            "bridge starting",
            version=__version__,
            env=settings.env,
            database=settings.database_url.split("://", 1)[0],
            sandbox=settings.sandbox_mode,
        )
        try:
            yield {"bridge": state}
        finally:
            app.running = None
        log.info("bridge stopping")


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app_from_env() -> BridgeApp:
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
