"""What every signed JSON webhook route does before it looks at the vendor's fields.

The Nexus and Genesys Cloud webhooks both verify a per-channel secret and then read a JSON
body; the rules (which media types, what JSON is refused, what a key problem answers) are
the same, so they live here and the routes keep only their vendor's header and model.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import SecretStr
from starlette.responses import JSONResponse, Response

from channel_bridge import jsondoc
from channel_bridge.db.models import Channel
from channel_bridge.errors import (
    BadRequest,
    ServiceUnavailable,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
)
from channel_bridge.jsondoc import why_unstorable_body
from channel_bridge.mappings.channel_cache import ChannelCache
from channel_bridge.ops.logging import get_logger
from channel_bridge.security import SecretBox, SecretBoxError

log = get_logger(__name__)


def channel_webhook_secrets(
    cache: ChannelCache, secret_box: SecretBox | None, channel: Channel
) -> list[SecretStr]:
    """The channel's webhook secrets (newest first); 401 without one, 503 when unreadable."""
    if not channel.webhook_secrets_encrypted:
        log.warning(
            "channel has no webhook secret",
            channel_id=channel.nexus_channel_id,
            backend=channel.backend,
        )
        raise Unauthorized("The channel has no webhook secret configured")
    if secret_box is None:
        raise ServiceUnavailable(
            "BRIDGE_SECRET_KEY is not configured; webhook secrets cannot be read"
        )
    try:
        return cache.webhook_secrets(channel, secret_box)
    except (SecretBoxError, ValueError) as exc:
        # A key rotation went wrong: 5XX so the sender retries once the operator fixes the key.
        log.error(
            "webhook secret unreadable",
            channel_id=channel.nexus_channel_id,
            backend=channel.backend,
            error=type(exc).__name__,
        )
        raise ServiceUnavailable("The channel's webhook secret cannot be decrypted") from None


def require_json(content_type: str | None) -> None:
    """415 unless the body is JSON; a missing header is tolerated."""
    if content_type is None:
        return
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType(f"Expected application/json, got {media_type or 'nothing'}")


def parse_json(raw: bytes) -> Any:
    """The parsed body: 400 when it is no JSON, 422 when it cannot be stored as it is."""
    try:
        document = jsondoc.parse(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(f"The body is not valid JSON: {exc.__class__.__name__}") from None
    # PostgreSQL text/jsonb cannot hold NUL or lone surrogates, and deep nesting breaks serialisers.
    problem = why_unstorable_body(raw, document)
    if problem is not None:
        raise Unprocessable(f"The body {problem}", errors=[{"field": "body", "message": problem}])
    return document


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def json_answer(content: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    """A webhook's 200 JSON answer: the bytes JSONResponse would send, encoded by orjson.

    orjson writes an object of strings exactly as `json.dumps(..., ensure_ascii=False,
    separators=(",", ":"))` does, at a third of the cost; what it refuses (a lone surrogate)
    goes to JSONResponse, which answers as before.
    """
    try:
        body = orjson.dumps(content)
    except TypeError:
        return JSONResponse(content, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
