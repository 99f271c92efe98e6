"""What both AXP callback routes (notifications, integration lifecycle) do before parsing.

AXP signs nothing, so the URL's token is the only credential: compared in constant time, and
a wrong one gets exactly the 404 of a path that does not exist.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import Request
from starlette.exceptions import HTTPException as StarletteHTTPException

from channel_bridge.errors import BadRequest, PayloadTooLarge, Unprocessable
from channel_bridge.jsondoc import why_unstorable
from channel_bridge.security import tokens_equal
from channel_bridge.settings import Settings

# Counts one outcome of the calling route (bridge_webhooks_total{source, outcome}).
CountOutcome = Callable[[str], None]


def check_callback_token(token: str, settings: Settings, count: CountOutcome) -> None:
    if not tokens_equal(token, settings.axp_callback_token):
        count("bad_token")
        raise StarletteHTTPException(status_code=404)


async def read_json_object(request: Request, count: CountOutcome) -> tuple[bytes, dict[str, Any]]:
    """The raw body and its JSON object, or a counted 413 / 400 / 422 naming what is wrong."""
    try:
        raw = await request.body()
    except PayloadTooLarge:
        count("too_large")
        raise
    try:
        data: Any = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        # RecursionError: nesting past the decoder's limit is a hostile body, not our bug.
        count("malformed")
        raise BadRequest("The callback body is not valid JSON") from None
    if not isinstance(data, dict):
        count("invalid")
        raise Unprocessable(
            "The callback body must be a JSON object",
            errors=[{"field": "body", "message": "must be an object"}],
        )
    problem = why_unstorable(data)
    if problem is not None:
        count("invalid")
        raise Unprocessable(
            f"The callback body {problem}", errors=[{"field": "body", "message": problem}]
        )
    return raw, data
