"""Akixi Web Services (XML) client: one session per process, Omnichannel Integration operations.

Session rules (docs/akixi-contract.md §2): `CreateSession` gives a SessionID and a Nonce;
`Authenticate` binds our admin user with a nonce-based password digest. The session is
reused; a session error (10301/10302) opens a new one once and retries the request once with
a new InvokeID. A refused `Authenticate` wipes the session on Akixi's side and is never
retried in a loop: it raises a permanent error, alerts, and pauses further logins.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

import httpx

from channel_bridge.ops import metrics
from channel_bridge.ops.logging import get_logger
from channel_bridge.platforms.akixi import schemas as ax
from channel_bridge.platforms.akixi.errors import (
    AUTHENTICATION_CODES,
    SESSION_CODES,
    AkixiAuthenticationError,
    AkixiConfigError,
    AkixiError,
    AkixiLoginSuspended,
    AkixiPermanentError,
    AkixiProtocolError,
    AkixiRetryableError,
    AkixiThrottledError,
    AkixiUnsafeXml,
    error_class_for_code,
)
from channel_bridge.platforms.akixi.password import password_digest
from channel_bridge.platforms.akixi.schemas import AkixiSession, OmnichannelEntry, Payload
from channel_bridge.platforms.akixi.xml import (
    MAX_RESPONSE_BYTES,
    AkixiResponse,
    MalformedXml,
    UnsafeXml,
    build_request,
    masked_excerpt,
    parse_response,
)
from channel_bridge.relay.errors import AuthError, RetryableError, ThrottledError, classify_status
from channel_bridge.settings import Settings

log = get_logger(__name__)

# A non-auth operation answering "not authenticated" means our session lost its login:
# one fresh login, like a session error (docs/akixi-contract.md §4.3).
RELOGIN_CODES = SESSION_CODES | {10305}
# A server that ignores Offset would page forever; 1000 pages of 1000 is far beyond our use.
MAX_LIST_PAGES = 1000
INVOKE_ID_MODULUS = 100_000


class InvokeIdCounter:
    """Akixi's recommended InvokeID: a zero-padded 5-digit counter that wraps 99999 -> 00000."""

    def __init__(self, start: int = 0) -> None:
        self._next = start % INVOKE_ID_MODULUS

    def next(self) -> str:
        # No await between read and write: safe for concurrent tasks on one event loop.
        value = self._next
        self._next = (value + 1) % INVOKE_ID_MODULUS
        return f"{value:05d}"


class AkixiClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        invoke_ids: InvokeIdCounter | None = None,
    ) -> None:
        self._http = http
        self._settings = settings
        self._clock = clock
        self._invoke_ids = invoke_ids or InvokeIdCounter()
        self._session: AkixiSession | None = None
        # Masked in every excerpt, whatever the session names are configured to.
        self._secret_names = (
            settings.akixi_session_id_name,
            settings.akixi_nonce_name,
            settings.akixi_auth_password_property,
        )
        # Single flight: concurrent deliveries that find no session wait for one login.
        self._login_lock = asyncio.Lock()
        self._logins_paused_until: float | None = None

    # --- Omnichannel Integration operations -------------------------------------------

    @property
    def unique_id_prefix(self) -> str:
        return self._settings.akixi_unique_id_prefix

    def partition_scope(self) -> Payload:
        """The scope properties of our entries, as configured: PartitionGUID and/or TelSysID +
        PartIDInTelSys (the seed sends all three; a GUID makes Akixi ignore the pair)."""
        s = self._settings
        scope: Payload = {}
        if s.akixi_partition_guid:
            scope[ax.PARTITION_GUID] = s.akixi_partition_guid
        if s.akixi_telsys_id and s.akixi_part_id_in_telsys:
            scope[ax.TEL_SYS_ID] = s.akixi_telsys_id
            scope[ax.PART_ID_IN_TEL_SYS] = s.akixi_part_id_in_telsys
        if scope:
            return scope
        raise AkixiConfigError(
            "Akixi partition is not configured: set BRIDGE_AKIXI_PARTITION_GUID or "
            "BRIDGE_AKIXI_TELSYS_ID and BRIDGE_AKIXI_PART_ID_IN_TELSYS"
        )

    async def omnichannel_add(self, properties: Payload) -> None:
        """Add an entry (the properties include UniqueID and the partition scope)."""
        await self.call(ax.OMNICHANNEL_ADD, properties)

    async def omnichannel_change(self, unique_id: str, properties: Payload) -> None:
        """Change only the given properties of the entry with this UniqueID."""
        await self.call(ax.OMNICHANNEL_CHANGE, {ax.UNIQUE_ID: unique_id, **properties})

    async def omnichannel_delete(self, unique_id: str) -> None:
        """Delete the entry (Akixi refuses while its CommsEnabled is True)."""
        await self.call(ax.OMNICHANNEL_DELETE, {ax.UNIQUE_ID: unique_id})

    async def omnichannel_info(self, unique_id: str) -> OmnichannelEntry:
        """All properties of one entry."""
        response = await self.call(ax.OMNICHANNEL_INFO, {ax.UNIQUE_ID: unique_id})
        properties = response.properties
        if not properties and len(response.entries) == 1:
            properties = response.entries[0]
        entry = OmnichannelEntry.from_properties(properties)
        if entry.unique_id is None:
            entry = dataclasses.replace(entry, unique_id=unique_id)
        return entry

    async def omnichannel_list(
        self, *, fields: tuple[str, ...] = ax.LIST_FIELDS, scope: Payload | None = None
    ) -> list[OmnichannelEntry]:
        """Every entry in our partition, paged with Offset/Limit until a short page."""
        payload: Payload = {**(scope or self.partition_scope())}
        if fields:
            payload[ax.OMNICHANNEL_INT_FIELDS] = ",".join(fields)
        limit = self._settings.akixi_list_page_size
        entries: list[OmnichannelEntry] = []
        offset = 0
        for _page in range(MAX_LIST_PAGES):
            response = await self.call(ax.OMNICHANNEL_LIST, payload, offset=offset, limit=limit)
            entries.extend(OmnichannelEntry.from_properties(item) for item in response.entries)
            if len(response.entries) < limit:
                return entries
            offset += len(response.entries)
        raise AkixiProtocolError(
            f"OmnichannelIntList did not end after {MAX_LIST_PAGES} pages",
            operation=ax.OMNICHANNEL_LIST,
        )

    # --- the session and one request ----------------------------------------------------

    async def call(
        self,
        operation: str,
        payload: Payload,
        *,
        offset: int | None = None,
        limit: int | None = None,
    ) -> AkixiResponse:
        """One operation in our session; a lost session is re-opened and the call retried, once."""
        session = await self._ensure_session()
        response, excerpt = await self._post(
            operation, session_id=session.session_id, payload=payload, offset=offset, limit=limit
        )
        if not response.ok and response.fail_code in RELOGIN_CODES:
            log.info(
                "akixi session lost; opening a new one",
                operation=operation,
                code=response.fail_code,
            )
            session = await self._renew_session(stale=session)
            response, excerpt = await self._post(
                operation,
                session_id=session.session_id,
                payload=payload,
                offset=offset,
                limit=limit,
            )
        if not response.ok:
            raise self._fail_error(operation, response, excerpt)
        return response

    async def log_in(self) -> None:
        """Open the session now (CreateSession, Authenticate): `check-config`'s credential test."""
        await self._ensure_session()

    async def _ensure_session(self) -> AkixiSession:
        if self._session is not None:
            return self._session
        async with self._login_lock:
            if self._session is None:
                self._session = await self._login()
            return self._session

    async def _renew_session(self, *, stale: AkixiSession) -> AkixiSession:
        async with self._login_lock:
            if self._session is not None and self._session.session_id != stale.session_id:
                return self._session  # another task already renewed it
            self._session = None
            self._session = await self._login()
            return self._session

    def forget_session(self) -> None:
        """Drop the session (e.g. after a credential change); the next call logs in again."""
        self._session = None
        self._logins_paused_until = None

    async def _login(self) -> AkixiSession:
        self._refuse_if_paused()
        settings = self._settings
        if not (settings.akixi_url and settings.akixi_user and settings.akixi_password):
            raise AkixiConfigError(
                "Akixi is not configured: set BRIDGE_AKIXI_URL, BRIDGE_AKIXI_USER and "
                "BRIDGE_AKIXI_PASSWORD"
            )
        created, excerpt = await self._post(ax.CREATE_SESSION, session_id=None, payload=None)
        if not created.ok:
            metrics.akixi_logins.labels("create_session_failed").inc()
            raise self._fail_error(ax.CREATE_SESSION, created, excerpt)
        session_id = created.value(settings.akixi_session_id_name)
        nonce = created.value(settings.akixi_nonce_name)
        if not session_id or nonce is None:
            metrics.akixi_logins.labels("create_session_failed").inc()
            raise AkixiProtocolError(
                f"CreateSession answered without a {settings.akixi_session_id_name} and "
                f"{settings.akixi_nonce_name} (BRIDGE_AKIXI_SESSION_ID_NAME, _NONCE_NAME)",
                operation=ax.CREATE_SESSION,
                response_excerpt=excerpt,
            )
        digest = password_digest(
            settings.akixi_password_scheme,
            nonce=nonce,
            password=settings.akixi_password.get_secret_value(),
            user=settings.akixi_user,
            digest_input=settings.akixi_password_digest_input,
            encoding=settings.akixi_password_digest_encoding,
        )
        authenticated, excerpt = await self._post(
            ax.AUTHENTICATE,
            session_id=session_id,
            payload={
                settings.akixi_auth_user_property: settings.akixi_user,
                settings.akixi_auth_password_property: digest,
            },
        )
        if authenticated.ok:
            metrics.akixi_logins.labels("success").inc()
            log.info("akixi session opened")
            return AkixiSession(session_id=session_id, nonce=nonce)
        error = self._fail_error(ax.AUTHENTICATE, authenticated, excerpt)
        refused = authenticated.fail_code in AUTHENTICATION_CODES
        if refused or isinstance(error, AkixiPermanentError):
            # Akixi has wiped the session and nonce; another try now would look like brute force.
            self._logins_paused_until = self._clock() + settings.akixi_auth_failure_backoff_s
            metrics.akixi_logins.labels("refused").inc()
            log.error(
                "akixi refused our credentials; logins paused",
                alert=True,
                code=authenticated.fail_code,
                akixi_message=authenticated.fail_message,
                user=settings.akixi_user,
                paused_s=settings.akixi_auth_failure_backoff_s,
            )
            raise AkixiAuthenticationError(
                f"Akixi Authenticate refused (code {authenticated.fail_code}): check "
                "BRIDGE_AKIXI_USER, BRIDGE_AKIXI_PASSWORD and BRIDGE_AKIXI_PASSWORD_SCHEME",
                code=authenticated.fail_code,
                akixi_message=authenticated.fail_message,
                operation=ax.AUTHENTICATE,
                response_excerpt=excerpt,
            )
        metrics.akixi_logins.labels("failed").inc()
        raise error

    def _refuse_if_paused(self) -> None:
        if self._logins_paused_until is None:
            return
        remaining = self._logins_paused_until - self._clock()
        if remaining <= 0:
            self._logins_paused_until = None
            return
        raise AkixiLoginSuspended(
            "Akixi logins are paused after a credential refusal",
            operation=ax.AUTHENTICATE,
            retry_after_s=remaining,
        )

    async def _post(
        self,
        operation: str,
        *,
        session_id: str | None,
        payload: Payload | None,
        offset: int | None = None,
        limit: int | None = None,
    ) -> tuple[AkixiResponse, str]:
        """Send one <Request>; returns the parsed Success or Fail and a masked excerpt."""
        invoke_id = self._invoke_ids.next()
        body = build_request(
            operation,
            invoke_id=invoke_id,
            session_id=session_id,
            payload=payload,
            offset=offset,
            limit=limit,
        )
        started = self._clock()
        status, raw, retry_after = await self._exchange(operation, body)
        excerpt = masked_excerpt(raw, secret_names=self._secret_names)
        try:
            response = parse_response(raw)
        except UnsafeXml as exc:
            metrics.akixi_calls.labels(operation, "bad_xml").inc()
            log.error(
                "akixi response refused: unsafe XML",
                alert=True,
                operation=operation,
                invoke_id=invoke_id,
                reason=str(exc),
                http_status=status,
            )
            raise AkixiUnsafeXml(
                f"{operation}: response refused ({exc})",
                operation=operation,
                http_status=status,
                response_excerpt=excerpt[:256],
            ) from None
        except MalformedXml as exc:
            if status >= 400:
                raise self._http_error(operation, status, retry_after, excerpt) from None
            metrics.akixi_calls.labels(operation, "bad_xml").inc()
            raise AkixiProtocolError(
                f"{operation}: unreadable response ({exc})",
                operation=operation,
                http_status=status,
                response_excerpt=excerpt,
            ) from None
        if status >= 400 and (response.ok or response.fail_code is None):
            raise self._http_error(operation, status, retry_after, excerpt)
        if response.invoke_id and response.invoke_id != invoke_id:
            metrics.akixi_calls.labels(operation, "bad_xml").inc()
            raise AkixiProtocolError(
                f"{operation}: response InvokeID {response.invoke_id} does not match {invoke_id}",
                operation=operation,
                response_excerpt=excerpt,
            )
        outcome = "success" if response.ok else f"fail:{response.fail_code}"
        metrics.akixi_calls.labels(operation, outcome).inc()
        log.info(
            "akixi call",
            operation=operation,
            invoke_id=invoke_id,
            outcome=outcome,
            duration_ms=round((self._clock() - started) * 1000, 1),
        )
        return response, excerpt

    async def _exchange(self, operation: str, body: bytes) -> tuple[int, bytes, float | None]:
        url = self._settings.akixi_url
        if not url:
            raise AkixiConfigError("BRIDGE_AKIXI_URL is not set", operation=operation)
        headers = {
            "content-type": self._settings.akixi_content_type,
            "accept": "text/xml, application/xml",
        }
        try:
            async with self._http.stream("POST", url, content=body, headers=headers) as reply:
                received = bytearray()
                async for chunk in reply.aiter_bytes():
                    received += chunk
                    if len(received) > MAX_RESPONSE_BYTES:
                        metrics.akixi_calls.labels(operation, "bad_xml").inc()
                        raise AkixiProtocolError(
                            f"{operation}: response larger than {MAX_RESPONSE_BYTES} bytes",
                            operation=operation,
                            http_status=reply.status_code,
                        )
                return reply.status_code, bytes(received), _retry_after(reply)
        except httpx.TimeoutException as exc:
            metrics.akixi_calls.labels(operation, "timeout").inc()
            raise AkixiThrottledError(
                f"{operation}: Akixi timed out ({type(exc).__name__})", operation=operation
            ) from None
        except httpx.TransportError as exc:
            metrics.akixi_calls.labels(operation, "unreachable").inc()
            raise AkixiRetryableError(
                f"{operation}: Akixi unreachable ({type(exc).__name__})", operation=operation
            ) from None

    def _http_error(
        self, operation: str, status: int, retry_after: float | None, excerpt: str
    ) -> AkixiError:
        metrics.akixi_calls.labels(operation, f"http:{status}").inc()
        relay_class = classify_status(status)
        error_class: type[AkixiError]
        if issubclass(relay_class, ThrottledError):
            error_class = AkixiThrottledError
        elif issubclass(relay_class, RetryableError):
            error_class = AkixiRetryableError
        elif issubclass(relay_class, AuthError):
            error_class = AkixiAuthenticationError
        else:
            error_class = AkixiPermanentError
        return error_class(
            f"{operation}: Akixi answered HTTP {status}",
            operation=operation,
            http_status=status,
            retry_after_s=retry_after,
            response_excerpt=excerpt,
        )

    def _fail_error(self, operation: str, response: AkixiResponse, excerpt: str) -> AkixiError:
        error_class = error_class_for_code(response.fail_code)
        detail = response.fail_message or "no message"
        return error_class(
            f"{operation} failed: {response.fail_code or 'no code'} {detail}",
            code=response.fail_code,
            akixi_message=response.fail_message,
            operation=operation,
            response_excerpt=excerpt,
        )


def _retry_after(reply: httpx.Response) -> float | None:
    value = reply.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
