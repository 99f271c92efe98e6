"""The webhook routes, called directly: past FastAPI's router and dependency solving.

A webhook route is the bridge's hot path: it is hit at the upstream's rate and must answer
within the upstream's limit (AXP 5 s, Nexus 10 s). FastAPI 0.16x resolves a request through
nested included routers, "effective route contexts", an exit stack and dependency solving
before the endpoint runs; for a route whose only inputs are one path parameter and the
`Request`, that is about as much CPU as our own work (docs/performance.md, "The
acknowledgement path").

So a route marked with `@fast_path` is matched here by its own compiled regex and its
endpoint is awaited with the `Request` and the path parameters, exactly as FastAPI would
call it. Everything the route means stays in one place: it is still a normal FastAPI route
(OpenAPI, tests through the router, the same function), this only skips the machinery in
between. The middlewares around it (request id, metrics, body limit) still run; errors are
rendered by the application's own exception handlers, so the answers are the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from fastapi.routing import APIRoute
from starlette._exception_handler import _lookup_exception_handler
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

_MARK = "__bridge_fast_path__"


def fast_path(endpoint: Endpoint) -> Endpoint:
    """Mark a route endpoint `(request, **path_params) -> Response` for the direct call.

    Only for endpoints FastAPI would call with nothing but path parameters (as str) and the
    Request: no dependencies, no body model, no query parameters.
    """
    setattr(endpoint, _MARK, True)
    return endpoint


def fast_routes(routes: Iterable[Any]) -> list[APIRoute]:
    """The marked routes among a router's routes."""
    return [r for r in routes if isinstance(r, APIRoute) and getattr(r.endpoint, _MARK, False)]


class FastPathMiddleware:
    """Innermost middleware: a marked route's request never reaches the router."""

    def __init__(self, app: ASGIApp, routes: Iterable[APIRoute]) -> None:
        self.app = app
        self._by_method: dict[str, list[APIRoute]] = {}
        for route in routes:
            for method in route.methods or ():
                self._by_method.setdefault(method, []).append(route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (candidates := self._by_method.get(scope["method"])) is None:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        for route in candidates:
            match = route.path_regex.match(path)
            if match is not None:
                break
        else:
            await self.app(scope, receive, send)
            return
        params = {
            name: route.param_convertors[name].convert(value)
            for name, value in match.groupdict().items()
        }
        # What the router would have put in the scope: the metrics label reads `route`.
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = params
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request=request, **params)
        except Exception as exc:
            # The handlers FastAPI's ExceptionMiddleware would use; anything without one
            # (a bug) goes on to the server-error handler, as it would through the router.
            handler = _lookup_exception_handler(_handled_errors(scope), exc)
            if handler is None:
                raise
            response = await handler(request, exc)  # type: ignore[arg-type,misc]
        await response(scope, receive, send)


def _handled_errors(scope: Scope) -> dict[Any, Any]:
    handlers = scope["app"].exception_handlers
    # 500 / Exception belong to ServerErrorMiddleware, outside this one.
    return {k: v for k, v in handlers.items() if k not in (500, Exception)}
