"""Failed Nexus API calls as relay delivery errors, so a delivery handler can let them propagate."""

from __future__ import annotations

import httpx

from channel_bridge.relay.errors import (
    AuthError,
    DeliveryError,
    PermanentError,
    RetryableError,
    ThrottledError,
    error_for_status,
    json_document,
)


class NexusApiError(DeliveryError):
    """A Nexus API call failed; `nexus_code` is `status.code` from the response envelope."""

    def __init__(
        self, message: str, *, nexus_code: int | str | None = None, **kwargs: object
    ) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.nexus_code = nexus_code


class NexusThrottledError(NexusApiError, ThrottledError):
    pass


class NexusRetryableError(NexusApiError, RetryableError):
    pass


class NexusAuthError(NexusApiError, AuthError):
    pass


class NexusRejectedError(NexusApiError, PermanentError):
    pass


class NexusConfigError(NexusApiError, PermanentError):
    """A setting the call needs is missing or the target is not allowed; no request was made."""


_BY_RELAY_CLASS: dict[type[DeliveryError], type[NexusApiError]] = {
    ThrottledError: NexusThrottledError,
    RetryableError: NexusRetryableError,
    AuthError: NexusAuthError,
    PermanentError: NexusRejectedError,
}


def error_for_response(response: httpx.Response, operation: str) -> NexusApiError:
    """The typed error for a non-2xx response, with the envelope's status code and message."""
    code: int | str | None = None
    detail = None
    document = json_document(response.content)
    if isinstance(document, dict) and isinstance(document.get("status"), dict):
        code = document["status"].get("code")
        detail = document["status"].get("message")
    return error_for_status(
        response,
        _BY_RELAY_CLASS,
        message=f"Nexus {operation} failed with HTTP {response.status_code}",
        detail=detail,
        nexus_code=code,
    )
