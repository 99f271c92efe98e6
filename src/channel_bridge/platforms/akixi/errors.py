"""Akixi failures as relay delivery errors, so a mirror handler can let them propagate.

Every class here IS a `relay.errors` class: the worker retries `RetryableError`s on its
schedule and sends `PermanentError`s to the dead letters at once. Akixi documents the
meaning of 10000-10105 only; the rest is classified by category (docs/akixi-contract.md §4).
"""

from __future__ import annotations

from channel_bridge.relay.errors import (
    DeliveryError,
    PermanentError,
    RetryableError,
    ThrottledError,
)

# Session invalid / expired: open a new session and retry the request once.
SESSION_CODES = frozenset({10301, 10302})
# Not authenticated / bad credentials / locked: never retried in a loop.
AUTHENTICATION_CODES = frozenset({10305, 10307, 10313})
# Akixi says: unknown error, resource not resolved, DB unavailable, maintenance.
TRANSIENT_CODES = frozenset({10000, 10103, 10104, 10105})
ENTRY_EXISTS = 12000
ENTRY_NOT_FOUND_CODES = frozenset({12001, 12002})
ENTRY_COMMS_ENABLED = 12003


class AkixiError(DeliveryError):
    """A failed Akixi call. `code` is Akixi's 5-digit code when the body carried one."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        akixi_message: str | None = None,
        operation: str | None = None,
        http_status: int | None = None,
        retry_after_s: float | None = None,
        response_excerpt: str | None = None,
    ) -> None:
        super().__init__(
            message,
            http_status=http_status,
            retry_after_s=retry_after_s,
            response_excerpt=response_excerpt,
        )
        self.code = code
        self.akixi_message = akixi_message
        self.operation = operation


class AkixiRetryableError(AkixiError, RetryableError):
    """Akixi is down, in maintenance, or answered something we could not read."""


class AkixiThrottledError(AkixiError, ThrottledError):
    """A timeout or 429: the next attempt waits longer."""


class AkixiPermanentError(AkixiError, PermanentError):
    """Configuration, permission or payload problems: retrying cannot help."""


class AkixiSessionError(AkixiRetryableError):
    """The session stayed invalid even after one fresh login."""


class AkixiAuthenticationError(AkixiPermanentError):
    """Akixi refused our credentials (10305/10307/10313 from Authenticate): an operator must act."""


class AkixiLoginSuspended(AkixiRetryableError):
    """Logins are paused after a credential refusal; the delivery waits for the pause to end."""


class AkixiEntryExists(AkixiPermanentError):
    """12000: an entry with this UniqueID already exists (Add)."""


class AkixiEntryNotFound(AkixiPermanentError):
    """12001/12002: no entry with this UniqueID."""


class AkixiEntryUnreachable(AkixiPermanentError):
    """Our entry exists, but Akixi's List gave no UniqueID, so it cannot be changed or deleted."""


class AkixiEntryCommsEnabled(AkixiRetryableError):
    """12003: Akixi refuses to delete an entry whose CommsEnabled is True."""


class AkixiUnsafeXml(AkixiPermanentError):
    """The response declared a DTD or entities: refused unread (billion laughs, XXE)."""


class AkixiProtocolError(AkixiRetryableError):
    """The response was not the XML we expect (a proxy page, a truncated body...)."""


class AkixiConfigError(AkixiPermanentError):
    """A required Akixi setting is missing."""


def error_class_for_code(code: int | None) -> type[AkixiError]:
    """The error class for an Akixi Fail code (unknown codes count as permanent)."""
    if code is None:
        return AkixiProtocolError
    if code in SESSION_CODES:
        return AkixiSessionError
    if code in AUTHENTICATION_CODES:
        return AkixiAuthenticationError
    if code in TRANSIENT_CODES:
        return AkixiRetryableError
    if code == ENTRY_EXISTS:
        return AkixiEntryExists
    if code in ENTRY_NOT_FOUND_CODES:
        return AkixiEntryNotFound
    if code == ENTRY_COMMS_ENABLED:
        return AkixiEntryCommsEnabled
    # 10001 (WS API disabled), 10101/10102 (our bug), 105xx/107xx permissions, 110xx/111xx
    # telephony server/partition, 12004 invalid property: configuration or programming errors.
    return AkixiPermanentError
