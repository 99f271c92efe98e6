"""X-Request-ID on every response, bound into every log line of that request."""

from __future__ import annotations

import re

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from channel_bridge.ids import random_hex_id

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_KEY = REQUEST_ID_HEADER.encode()
# A client-supplied id is echoed only if plain; anything else is replaced (no header injection).
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def safe_request_id(value: str | None) -> str:
    if value and _SAFE_ID.match(value):
        return value
    return random_hex_id()


def request_id_of(scope: Scope) -> str:
    """The request's id: the client's X-Request-ID if plain, else a fresh one."""
    incoming = None
    for name, value in scope.get("headers", ()):
        if name == _REQUEST_ID_KEY:
            incoming = value.decode("latin-1")
            break
    return safe_request_id(incoming)


def with_request_id(headers: list[tuple[bytes, bytes]], request_id: str) -> None:
    """Set X-Request-ID in a raw header list in place, replacing any there (as MutableHeaders)."""
    MutableHeaders(raw=headers)[REQUEST_ID_HEADER] = request_id


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            structlog.contextvars.clear_contextvars()
