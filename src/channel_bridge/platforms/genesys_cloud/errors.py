"""Failed Genesys Cloud calls as relay delivery errors, so the worker schedules them by class."""

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


class GenesysCloudApiError(DeliveryError):
    """A Genesys Cloud API call failed; `code` is the error body's `code` when it has one."""

    def __init__(self, message: str, *, code: str | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.code = code


class GenesysCloudThrottledError(GenesysCloudApiError, ThrottledError):
    pass


class GenesysCloudRetryableError(GenesysCloudApiError, RetryableError):
    pass


class GenesysCloudAuthError(GenesysCloudApiError, AuthError):
    pass


class GenesysCloudRejectedError(GenesysCloudApiError, PermanentError):
    pass


class GenesysCloudConfigError(GenesysCloudApiError, PermanentError):
    """BRIDGE_GENESYS_CLOUD_* settings are missing: no request was made."""


_BY_RELAY_CLASS: dict[type[DeliveryError], type[GenesysCloudApiError]] = {
    ThrottledError: GenesysCloudThrottledError,
    RetryableError: GenesysCloudRetryableError,
    AuthError: GenesysCloudAuthError,
    PermanentError: GenesysCloudRejectedError,
}


def error_for_response(
    response: httpx.Response,
    operation: str,
    *,
    error_class: type[GenesysCloudApiError] | None = None,
) -> GenesysCloudApiError:
    """The typed error for a non-2xx answer, with the error body's `code` and `message`."""
    code = detail = None
    document = json_document(response.content)
    if isinstance(document, dict):
        code = document.get("code") if isinstance(document.get("code"), str) else None
        detail = document.get("message") or document.get("error_description")
    return error_for_status(
        response,
        _BY_RELAY_CLASS,
        message=f"Genesys Cloud {operation} failed with HTTP {response.status_code}",
        detail=detail,
        error_class=error_class,
        code=code,
    )


def error_for_transport(exc: httpx.TransportError, operation: str) -> GenesysCloudApiError:
    """A timeout is throttling (the upstream is slow); a connect error is retryable."""
    cls = (
        GenesysCloudThrottledError
        if isinstance(exc, httpx.TimeoutException)
        else GenesysCloudRetryableError
    )
    return cls(f"Genesys Cloud {operation} failed: {type(exc).__name__}")
