"""What both AXP callback routes (notifications, integration lifecycle) do before parsing.

AXP signs nothing, so the URL's token is the only credential: compared in constant time, and
a wrong one gets exactly the 404 of a path that does not exist.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request
from starlette.exceptions import HTTPException as StarletteHTTPException

from channel_bridge import jsondoc
from channel_bridge.errors import BadRequest, PayloadTooLarge, Unprocessable
from channel_bridge.jsondoc import why_unstorable_body
from channel_bridge.security import any_token_equal
from channel_bridge.settings import Settings

# Counts one outcome of the calling route (bridge_webhooks_total{source, outcome}).
CountOutcome = Callable[[str], None]


def check_callback_token(
    token: str,
    settings: Settings,
    count: CountOutcome,
    *,
    route: Literal["notifications", "lifecycle"] = "notifications",
) -> None:
    # Each route has its own token (the lifecycle one can disable channels), and each accepts
    # its previous value during a rotation.
    if not any_token_equal(token, settings.callback_tokens(route)):
        count("bad_token")
        raise StarletteHTTPException(status_code=404)


@dataclass(frozen=True)
class CallbackBody:
    raw: bytes
    # The parsed JSON (any type); None for an empty body.
    document: Any
    # No bytes at all, or only whitespace: told apart from a JSON `null`.
    empty: bool


async def read_json_document(
    request: Request, count: CountOutcome, *, allow_empty: bool = False
) -> CallbackBody:
    """The raw body and its JSON value, or a counted 413 / 400 naming what is wrong."""
    try:
        raw = await request.body()
    except PayloadTooLarge:
        count("too_large")
        raise
    if allow_empty and not raw.strip():
        return CallbackBody(raw, None, empty=True)
    try:
        document: Any = jsondoc.parse(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        # RecursionError: nesting past the decoder's limit is a hostile body, not our bug.
        count("malformed")
        raise BadRequest("The callback body is not valid JSON") from None
    return CallbackBody(raw, document, empty=False)


async def read_json_object(request: Request, count: CountOutcome) -> tuple[bytes, dict[str, Any]]:
    """The raw body and its JSON object, or a counted 413 / 400 / 422 naming what is wrong."""
    body = await read_json_document(request, count)
    raw, data = body.raw, body.document
    if not isinstance(data, dict):
        count("invalid")
        raise Unprocessable(
            "The callback body must be a JSON object",
            errors=[{"field": "body", "message": "must be an object"}],
        )
    problem = why_unstorable_body(raw, data)
    if problem is not None:
        count("invalid")
        raise Unprocessable(
            f"The callback body {problem}", errors=[{"field": "body", "message": problem}]
        )
    return raw, data
