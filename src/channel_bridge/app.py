"""create_app(settings) -> FastAPI. The lifespan owns the engine, HTTP clients and background tasks."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from channel_bridge import __version__
from channel_bridge.db.engine import create_engine, create_sessionmaker
from channel_bridge.errors import (
    PROBLEM_CONTENT_TYPE,
    BridgeError,
    field_errors_from_pydantic,
    problem_body,
)
from channel_bridge.ops import health
from channel_bridge.ops.body_limit import BodyLimitMiddleware
from channel_bridge.ops.logging import configure_logging, get_logger
from channel_bridge.ops.metrics import MetricsMiddleware
from channel_bridge.ops.request_context import RequestContextMiddleware
from channel_bridge.relay.destinations import DestinationRegistry
from channel_bridge.relay.inbox import Inbox
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


def create_http_client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.http_timeout_s, connect=settings.http_connect_timeout_s),
        limits=httpx.Limits(
            max_connections=settings.http_max_connections,
            max_keepalive_connections=settings.http_max_connections // 2,
        ),
        headers={"user-agent": f"channel-bridge/{__version__}"},
        follow_redirects=False,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    settings.ensure_usable()
    configure_logging(
        level=settings.log_level, fmt=settings.effective_log_format, secret_values=settings.secret_values()
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            engine = create_engine(settings)
            stack.push_async_callback(engine.dispose)
            http = create_http_client(settings)
            stack.push_async_callback(http.aclose)
            app.state.engine = engine
            app.state.sessionmaker = create_sessionmaker(engine)
            app.state.http = http
            app.state.destinations = DestinationRegistry()
            app.state.inbox = Inbox(app.state.sessionmaker)
            app.state.exit_stack = stack
            # Hooks the bridge wiring sets: which deliveries an inbound event becomes.
            # Until set, an inbound event is stored and acknowledged but not relayed.
            app.state.axp_event_planner = None
            app.state.nexus_message_planner = None
            # --- components (each adds itself here; keep one line or block each) ---------
            log.info("bridge starting", version=__version__, env=settings.env,
                     database=settings.database_url.split("://", 1)[0], sandbox=settings.sandbox_mode)
            yield
            log.info("bridge stopping")

    app = FastAPI(
        title="channel-bridge",
        version=__version__,
        summary="AXP Custom Messaging <-> Genesys Nexus Async bridge",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.secret_box = SecretBox(settings.secret_key) if settings.secret_key else None
    _install_error_handlers(app)
    app.include_router(health.router)
    # --- routers (one line each) ---------------------------------------------------

    # Middleware order: the last added runs first.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(RequestContextMiddleware)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and `channel-bridge serve`."""
    return create_app(Settings())


def _problem(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=PROBLEM_CONTENT_TYPE, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BridgeError)
    async def _bridge_error(_request: Request, exc: BridgeError) -> JSONResponse:
        return _problem(exc.status, exc.to_problem(), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = field_errors_from_pydantic(list(exc.errors()))
        return _problem(422, problem_body(422, "Unprocessable content", "The request is not valid",
                                          slug="validation-error", errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "Request failed"
        return _problem(exc.status_code, problem_body(exc.status_code, detail, detail),
                        dict(exc.headers or {}))

    for error_type in DATABASE_UNAVAILABLE:
        @app.exception_handler(error_type)
        async def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
            log.warning("database unavailable", error=type(exc).__name__)
            return _problem(503, problem_body(503, "Service unavailable",
                                              "The database is not reachable; retry later",
                                              slug="database-unavailable"), {"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", error=type(exc).__name__)
        return _problem(500, problem_body(500, "Internal error", "An unexpected error occurred",
                                          slug="internal-error"))
