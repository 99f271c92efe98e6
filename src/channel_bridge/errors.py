"""One error base class, rendered by one handler as RFC 7807 `application/problem+json`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://channel-bridge.dev/problems/"


class BridgeError(Exception):
    """A failure with an HTTP meaning. `detail` must never contain a secret."""

    status: int = 500
    title: str = "Internal error"
    slug: str = "internal-error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.headers = headers or {}

    def to_problem(self) -> dict[str, Any]:
        return problem_body(
            self.status, self.title, self.detail, slug=self.slug, errors=self.errors
        )


class BadRequest(BridgeError):
    status, title, slug = 400, "Bad request", "bad-request"


class Unauthorized(BridgeError):
    status, title, slug = 401, "Unauthorized", "unauthorized"


class NotFound(BridgeError):
    status, title, slug = 404, "Not found", "not-found"


class Conflict(BridgeError):
    status, title, slug = 409, "Conflict", "conflict"


class PayloadTooLarge(BridgeError):
    status, title, slug = 413, "Payload too large", "payload-too-large"


class UnsupportedMediaType(BridgeError):
    status, title, slug = 415, "Unsupported media type", "unsupported-media-type"


class Unprocessable(BridgeError):
    status, title, slug = 422, "Unprocessable content", "validation-error"


class ServiceUnavailable(BridgeError):
    status, title, slug = 503, "Service unavailable", "service-unavailable"


def problem_body(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + (slug or "about-blank"),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return body


def field_errors_from_pydantic(
    errors: Sequence[Mapping[str, Any]], *, prefix: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Pydantic errors as `{"field": "a.b.0", "message": ...}` without echoing input values."""
    rendered = []
    for error in errors:
        loc = prefix + tuple(str(part) for part in error.get("loc", ()))
        rendered.append({"field": ".".join(loc) or "body", "message": error.get("msg", "invalid")})
    return rendered
