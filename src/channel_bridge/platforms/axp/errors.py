"""AXP failures as relay errors: problem+json bodies parsed, classified by status.

Every AXP API answers errors as RFC 7807 `application/problem+json` with an optional
`violations[{field, message, code}]` list (all AXP specs, `Problem` schema). The error raised
here IS an instance of the relay class the status calls for, so a delivery handler can let
it propagate and the worker schedules the retry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from channel_bridge.ops.logging import redact_text
from channel_bridge.relay.errors import (
    AuthError,
    DeliveryError,
    PermanentError,
    RetryableError,
    ThrottledError,
    classify_status,
    parse_retry_after,
)

# Attempt rows keep at most 2 KB of the upstream answer.
EXCERPT_LIMIT = 2048


@dataclass(frozen=True, slots=True)
class Violation:
    field: str | None
    message: str | None
    code: int | None = None

    def __str__(self) -> str:
        code = f" ({self.code})" if self.code is not None else ""
        return f"{self.field or '?'}: {self.message or 'invalid'}{code}"


class AxpApiError(DeliveryError):
    """An AXP call failed. Subclasses pair this with the relay class for the status."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        title: str | None = None,
        detail: str | None = None,
        problem_type: str | None = None,
        violations: tuple[Violation, ...] = (),
        retry_after_s: float | None = None,
        response_excerpt: str | None = None,
    ) -> None:
        super().__init__(
            message,
            http_status=http_status,
            retry_after_s=retry_after_s,
            response_excerpt=response_excerpt,
        )
        self.status = http_status
        self.title = title
        self.detail = detail
        self.problem_type = problem_type
        self.violations = violations


class AxpRetryableError(AxpApiError, RetryableError):
    """5xx, 408, connect errors: tried again on the schedule."""


class AxpThrottledError(AxpApiError, ThrottledError):
    """429 or a timeout: the next attempt waits at least the throttle minimum."""


class AxpPermanentError(AxpApiError, PermanentError):
    """Other 4xx, or a request we refuse to make (foreign media host, oversize media)."""


class AxpAuthError(AxpApiError, AuthError):
    """AXP refused a freshly obtained token, or the token endpoint refused our credentials."""


class AxpCredentialsError(AxpAuthError, PermanentError):
    """The token endpoint rejected client id, secret or app key: retrying cannot help."""


_BY_RELAY_CLASS: dict[type[DeliveryError], type[AxpApiError]] = {
    RetryableError: AxpRetryableError,
    ThrottledError: AxpThrottledError,
    PermanentError: AxpPermanentError,
    AuthError: AxpAuthError,
}


def _violations(raw: Any) -> tuple[Violation, ...]:
    if not isinstance(raw, list):
        return ()
    found = []
    for item in raw:
        if isinstance(item, dict):
            code = item.get("code")
            found.append(
                Violation(
                    field=_text(item.get("field")),
                    message=_text(item.get("message")),
                    code=code if isinstance(code, int) else None,
                )
            )
    return tuple(found)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def error_from_response(
    response: httpx.Response, *, operation: str, error_class: type[AxpApiError] | None = None
) -> AxpApiError:
    """The classified error for a failed AXP response (its body must already be read)."""
    status = response.status_code
    body_text = redact_text(response.text[:EXCERPT_LIMIT]) if response.content else ""
    problem: dict[str, Any] = {}
    try:
        parsed = response.json()
        if isinstance(parsed, dict):
            problem = parsed
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass
    title = _text(problem.get("title"))
    detail = _text(problem.get("detail"))
    violations = _violations(problem.get("violations"))
    parts = [f"AXP {operation} failed: HTTP {status}"]
    if title:
        parts.append(title)
    message = " ".join(parts)
    if detail:
        message += f": {detail}"
    if violations:
        message += " [" + "; ".join(str(v) for v in violations) + "]"
    cls = error_class or _BY_RELAY_CLASS[classify_status(status)]
    return cls(
        redact_text(_one_line(message)),
        http_status=status,
        title=title,
        detail=detail,
        problem_type=_text(problem.get("type")),
        violations=violations,
        retry_after_s=parse_retry_after(response.headers.get("retry-after")),
        response_excerpt=body_text or None,
    )


def error_from_transport(exc: httpx.TransportError, *, operation: str) -> AxpApiError:
    """A timeout is throttled (give AXP room); other transport failures are retryable."""
    kind = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return AxpThrottledError(f"AXP {operation} failed: {kind} (timed out)")
    return AxpRetryableError(f"AXP {operation} failed: {kind}")


async def checked_request(
    http: httpx.AsyncClient, method: str, url: str, *, operation: str, **kwargs: Any
) -> httpx.Response:
    """Send one AXP request; a 2xx response, or the classified error for anything else."""
    try:
        response = await http.request(method, url, **kwargs)
    except httpx.TransportError as exc:
        raise error_from_transport(exc, operation=operation) from exc
    if response.is_error:
        raise error_from_response(response, operation=operation)
    return response
