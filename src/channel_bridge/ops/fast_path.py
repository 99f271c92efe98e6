"""The webhook routes, served before FastAPI's middleware stack and router.

A webhook route is the bridge's hot path: it is hit at the upstream's rate and must answer
within the upstream's limit (AXP 5 s, Nexus 10 s). Through FastAPI a request passes Starlette's
server-error layer, FastAPI's telemetry and body-limit layers, our request-id, metrics and
body-limit middlewares (each wrapping `send` once more), then nested routers and dependency
solving; for a route whose only inputs are one path parameter and the `Request`, that costs
about as much CPU as the route's own work (docs/performance.md, "The acknowledgement path").

So a route marked with `@fast_path` is matched by its own compiled regex and `FastRoutes.serve`
gives it, in one layer, what that stack would: the request id (bound for logging, echoed as
X-Request-ID), the HTTP metrics under the route's template, the body limit and its 413, the
application's exception handlers, and for an exception without one the application's 500
handler, re-raised to the server afterwards as Starlette does. A plain `Response` is sent
with the request id added to its own header list, so no `send` wrapper runs. It is still a
normal FastAPI route (OpenAPI, the same function); the answers are the same bytes either way
(`tests/unit/test_fast_path.py` compares the two paths).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import structlog
from fastapi.routing import APIRoute
from starlette._exception_handler import _lookup_exception_handler
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Message, Receive, Scope, Send

from channel_bridge.ops.body_limit import (
    BodyTooLarge,
    declared_too_large,
    limited_receive,
    send_too_large,
)
from channel_bridge.ops.metrics import observe_http_request, route_template
from channel_bridge.ops.request_context import request_id_of, with_request_id

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
Match = tuple[APIRoute, dict[str, Any]]

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


class FastRoutes:
    """The marked routes of an application, and how one of them is served."""

    def __init__(self, routes: Iterable[APIRoute], *, max_body_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes
        self._by_method: dict[str, list[APIRoute]] = {}
        for route in routes:
            for method in route.methods or ():
                self._by_method.setdefault(method, []).append(route)

    def match(self, scope: Scope) -> Match | None:
        """The marked route of an HTTP request and its path parameters, if it has one."""
        candidates = self._by_method.get(scope["method"])
        if candidates is None:
            return None
        path = scope["path"]
        for route in candidates:
            found = route.path_regex.match(path)
            if found is not None:
                params = {
                    name: route.param_convertors[name].convert(value)
                    for name, value in found.groupdict().items()
                }
                return route, params
        return None

    async def serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        matched: Match,
        exception_handlers: Mapping[Any, Any],
    ) -> None:
        """Answer the request as the middleware stack and the router would.

        The layers, outermost first, are those of `app.create_app`: the server-error
        handler, then the request id, the metrics, the body limit, and the route with the
        application's other exception handlers.
        """
        started = time.perf_counter()
        response = _Progress()
        try:
            try:
                await self._with_request_id(
                    scope, receive, send, matched, exception_handlers, response
                )
            finally:
                observe_http_request(
                    scope["method"],
                    route_template(scope),
                    response.status,
                    time.perf_counter() - started,
                )
        except Exception as exc:
            # Starlette's ServerErrorMiddleware: the 500 handler answers (once the request
            # context has closed, so it finds the request id in the scope), then the error
            # goes on to the server, which logs it.
            handler = _server_error_handler(exception_handlers)
            request = Request(scope)
            answer = (
                await handler(request, exc)
                if handler is not None
                else PlainTextResponse("Internal Server Error", status_code=500)
            )
            if not response.started:
                await answer(scope, receive, send)
            raise

    async def _with_request_id(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        matched: Match,
        exception_handlers: Mapping[Any, Any],
        response: _Progress,
    ) -> None:
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        response.request_id = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            if declared_too_large(scope, self.max_body_bytes):
                await response.send_raw(send, send_too_large, self.max_body_bytes)
                return
            try:
                await self._route(
                    scope,
                    limited_receive(receive, self.max_body_bytes),
                    send,
                    matched,
                    exception_handlers,
                    response,
                )
            except BodyTooLarge:
                if not response.started:
                    await response.send_raw(send, send_too_large, self.max_body_bytes)
        finally:
            structlog.contextvars.clear_contextvars()

    async def _route(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        matched: Match,
        exception_handlers: Mapping[Any, Any],
        response: _Progress,
    ) -> None:
        route, params = matched
        # What the router would have put in the scope: the metrics label reads `route`.
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = params
        request = Request(scope, receive, send)
        try:
            answer = await route.endpoint(request=request, **params)
        except Exception as exc:
            # The handlers FastAPI's ExceptionMiddleware would use; anything without one
            # (a bug) goes on to the server-error handler, as it would through the router.
            handler = _lookup_exception_handler(_handled_errors(exception_handlers), exc)
            if handler is None:
                raise
            answer = await handler(request, exc)  # type: ignore[arg-type,misc]
        await response.send(scope, receive, send, answer)


class _Progress:
    """What the layers above the route track of its answer: the status and whether it began."""

    __slots__ = ("request_id", "started", "status")

    def __init__(self) -> None:
        self.request_id = ""
        self.started = False
        # The metrics' status of a request that raised before answering.
        self.status = 500

    async def send(self, scope: Scope, receive: Receive, send: Send, answer: Response) -> None:
        if type(answer).__call__ is Response.__call__ and answer.background is None:
            # A plain response: its start and body, the request id in its own header list.
            headers = list(answer.raw_headers)
            with_request_id(headers, self.request_id)
            self.started, self.status = True, answer.status_code
            await send({"type": "http.response.start", "status": self.status, "headers": headers})
            await send({"type": "http.response.body", "body": answer.body})
            return
        await answer(scope, receive, self._tracking(send))

    async def send_raw(self, send: Send, respond: Callable[..., Any], *args: Any) -> None:
        await respond(self._tracking(send), *args)

    def _tracking(self, send: Send) -> Send:
        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.started, self.status = True, message["status"]
                # A copy, as MutableHeaders(scope=message) makes: the response keeps its own.
                headers = list(message["headers"])
                with_request_id(headers, self.request_id)
                message["headers"] = headers
            await send(message)

        return tracking_send


def _handled_errors(handlers: Mapping[Any, Any]) -> dict[Any, Any]:
    # 500 / Exception belong to the server-error handler, outside this one.
    return {k: v for k, v in handlers.items() if k not in (500, Exception)}


def _server_error_handler(handlers: Mapping[Any, Any]) -> Any:
    # As FastAPI.build_middleware_stack picks it: the last of 500 and Exception registered.
    chosen = None
    for key, value in handlers.items():
        if key in (500, Exception):
            chosen = value
    return chosen
