"""How a destination reports a failed delivery. The worker schedules by the class."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx

from channel_bridge.ops.logging import redact_text

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# Kept of a failed call's response body on its attempt row (secrets masked).
EXCERPT_LIMIT = 2048
# Of an error body's own message, in the error's message.
DETAIL_LIMIT = 300


class DeliveryError(Exception):
    """Base: a delivery attempt failed. `response_excerpt` must already be free of secrets."""

    error_class = "error"

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        retry_after_s: float | None = None,
        response_excerpt: str | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.retry_after_s = retry_after_s
        self.response_excerpt = response_excerpt


class RetryableError(DeliveryError):
    """Connect errors, timeouts, 408, 425, 429, 5xx: try again on the schedule."""

    error_class = "retryable"


class ThrottledError(RetryableError):
    """429 or a timeout: the next attempt waits at least `retry_throttled_min_s`."""

    error_class = "throttled"


class PermanentError(DeliveryError):
    """Other 4xx or our own payload is invalid: the delivery goes dead at once."""

    error_class = "permanent"


class AuthError(DeliveryError):
    """401 after the platform already refreshed its credentials once."""

    error_class = "auth"


def classify_status(status: int) -> type[DeliveryError]:
    """The error class for a failed HTTP status."""
    if status in (429,):
        return ThrottledError
    if status in RETRYABLE_STATUSES or status >= 500:
        return RetryableError
    if status == 401:
        return AuthError
    return PermanentError


def parse_retry_after(value: str | None, *, now: datetime | float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date (RFC 9110
    §10.2.3); None when absent or unreadable. `now` is a datetime or epoch seconds."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if now is None:
        reference = time.time()
    elif isinstance(now, datetime):
        reference = now.timestamp()
    else:
        reference = now
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - reference)


VendorError = TypeVar("VendorError", bound=DeliveryError)


def json_document(content: bytes) -> Any:
    """An error body as JSON, or None when it is not JSON."""
    try:
        return json.loads(content)
    except ValueError:
        return None


def error_for_status(
    response: httpx.Response,
    by_class: Mapping[type[DeliveryError], type[VendorError]],
    *,
    message: str,
    detail: object = None,
    error_class: type[VendorError] | None = None,
    **fields: Any,
) -> VendorError:
    """A vendor's error for a non-2xx answer: the vendor class of what the status means
    (`classify_status`), the body's own message (redacted) after `message`, the status, its
    Retry-After and a redacted excerpt of the body."""
    if detail:
        message += f": {redact_text(str(detail))[:DETAIL_LIMIT]}"
    cls = error_class or by_class[classify_status(response.status_code)]
    return cls(
        message,
        http_status=response.status_code,
        retry_after_s=parse_retry_after(response.headers.get("retry-after")),
        response_excerpt=redact_text(response.text[:EXCERPT_LIMIT]),
        **fields,
    )
