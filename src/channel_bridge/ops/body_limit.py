"""Refuse request bodies above the limit before anything reads or parses them."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from channel_bridge.errors import PROBLEM_CONTENT_TYPE, PayloadTooLarge, problem_body


class BodyTooLarge(PayloadTooLarge):
    """Raised from receive() when a streamed body passes the limit; rendered as 413."""


def declared_too_large(scope: Scope, max_bytes: int) -> bool:
    """Whether the request's Content-Length already says it is over the limit."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = -1
            return declared > max_bytes
    return False


def limited_receive(receive: Receive, max_bytes: int) -> Receive:
    """`receive` that raises BodyTooLarge once the body read so far passes the limit."""
    received = 0

    async def limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise BodyTooLarge(f"The request body exceeds {max_bytes} bytes")
        return message

    return limited


async def send_too_large(send: Send, max_bytes: int) -> None:
    """The 413 problem answer of a body over the limit."""
    body = json.dumps(
        problem_body(
            413,
            "Payload too large",
            f"The request body exceeds {max_bytes} bytes",
            slug="payload-too-large",
        )
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if declared_too_large(scope, self.max_bytes):
            await send_too_large(send, self.max_bytes)
            return

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive(receive, self.max_bytes), tracking_send)
        except BodyTooLarge:
            if not started:
                await send_too_large(send, self.max_bytes)
