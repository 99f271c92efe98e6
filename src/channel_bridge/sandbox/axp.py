"""An in-process AXP simulator that follows the same contracts as the vendor specs.

Auth 1.0.2 token endpoint (expiring tokens, 401 for unknown or expired ones), Custom Messaging
1.0.4 (send, typing, disconnect), Digital Notification 1.0.1 subscriptions (CRUD), Signed
Media URI / Signed Media 1.0.1 (signed upload URI, upload, signed download), problem+json
errors, fault injection (error rate, latency, 429 with Retry-After, scripted failures), a
record of every request, and an optional "agent" that answers each customer message through
the subscribed callback URLs the way AXP does: a MESSAGES callback for the customer message
with status DELIVERED, then an AGENT reply addressed to the customer.

Use it with `httpx.ASGITransport(app=create_axp_simulator(...))`; the state is on
`app.state.simulator`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from channel_bridge.sandbox.axp_admin import AxpAdminState, add_admin_routes

PROBLEM = "application/problem+json"
CONSTRAINT_DETAIL = (
    "A problem that indicates a syntactically correct, yet semantically illegal request."
)
DOCS = "https://developers.avayacloud.com/onecloud-ccaas/docs/error-handling"
ACCOUNT_PATTERN = re.compile(r"^[a-zA-Z]{6}$")
UUID_PATTERN = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
SUBSCRIPTION_EVENT_TYPES = {
    "MESSAGES",
    "CUSTOMER_MESSAGES",
    "CC_MESSAGES",
    "PARTICIPANT_ADDED",
    "PARTICIPANT_DISCONNECTED",
    "ENGAGEMENT_CREATED",
    "ENGAGEMENT_ERROR",
    "TYPING",
    "ALL",
}
CUSTOMER_MESSAGE_TYPES = {"MESSAGES", "CUSTOMER_MESSAGES", "ALL"}
AGENT_MESSAGE_TYPES = {"MESSAGES", "CC_MESSAGES", "ALL"}


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    # Wall-clock arrival (time.time()), so a drill can tell when an upstream was left alone.
    received_at: float = field(default_factory=time.time)

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True, slots=True)
class RecordedCallback:
    url: str
    event: dict[str, Any]
    status: int | None
    error: str | None = None


@dataclass(slots=True)
class Faults:
    """Failure injection, applied to every API call except the token endpoint unless asked."""

    error_rate: float = 0.0
    error_status: int = 503
    latency_s: float = 0.0
    throttle_next: int = 0
    retry_after: str = "1"
    # Statuses to answer, in order, to the next requests (e.g. [401] revokes one call).
    fail_next: list[int] = field(default_factory=list)
    include_token_endpoint: bool = False


class _Reply(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def problem_document(
    status: int,
    title: str,
    detail: str,
    *,
    anchor: str,
    violations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An AXP problem+json body (all AXP specs' `Problem` schema)."""
    body: dict[str, Any] = {
        "type": f"{DOCS}#{anchor}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if violations:
        body["violations"] = violations
    return body


def _problem(
    status: int,
    title: str,
    detail: str,
    *,
    anchor: str,
    violations: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = problem_document(status, title, detail, anchor=anchor, violations=violations)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _constraint_violation(
    violations: list[dict[str, Any]] | None = None, *, detail: str = CONSTRAINT_DETAIL
) -> JSONResponse:
    """AXP's 400 for a request it refuses (the specs' `#constraint-violation` problem)."""
    return _problem(
        400, "Constraint Violation", detail, anchor="constraint-violation", violations=violations
    )


def _violation(field_name: str, message: str, code: int = 20002) -> dict[str, Any]:
    return {"field": field_name, "message": message, "code": code}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _reply(_request: Request, exc: _Reply) -> Response:
    return exc.response


class AxpSimulator:
    def __init__(
        self,
        *,
        account_id: str = "SANDBX",
        client_id: str = "sandbox-client",
        client_secret: str = "sandbox-client-secret",  # noqa: S107 (simulated credentials)
        app_key: str = "sandbox-app-key",
        base_url: str = "https://axp.sandbox.test",
        token_ttl_s: int = 900,
        clock: Callable[[], float] = time.time,
        agent: bool = False,
        agent_name: str = "Sandbox Agent",
        callback_client: httpx.AsyncClient | None = None,
        seed: int = 0,
    ) -> None:
        self.account_id = account_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.app_key = app_key
        self.base_url = base_url.rstrip("/")
        self.token_ttl_s = token_ttl_s
        self.clock = clock
        self.agent = agent
        self.agent_name = agent_name
        self.callback_client = callback_client
        self.faults = Faults()
        self._random = random.Random(seed)
        self._signing_key = secrets.token_bytes(32)
        self.requests: list[RecordedRequest] = []
        self.callbacks: list[RecordedCallback] = []
        self.tokens: dict[str, float] = {}
        self.token_requests = 0
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.media: dict[str, dict[str, Any]] = {}
        self.messages: list[dict[str, Any]] = []
        self.dialogs: dict[str, dict[str, Any]] = {}
        self.typing: list[dict[str, Any]] = []
        self.disconnects: list[dict[str, Any]] = []
        self._sent: dict[tuple[str, str], dict[str, Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.admin = AxpAdminState()
        self.app = self._build_app()

    # --- test helpers ------------------------------------------------------------------

    def recorded(
        self,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        include_token: bool = False,
    ) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method)
            and (path_contains is None or path_contains in r.path)
            and (include_token or not r.path.endswith("/openid-connect/token"))
        ]

    def revoke_tokens(self) -> None:
        """Make every issued token invalid, as if AXP rotated its signing keys."""
        self.tokens.clear()

    def add_subscription(
        self, channel_provider_id: str, callback_url: str, event_types: list[str]
    ) -> dict[str, Any]:
        sub: dict[str, Any] = {
            "subscriptionId": str(uuid.uuid4()),
            "channelProviderId": channel_provider_id,
            "callbackUrl": callback_url,
            "eventTypes": list(event_types),
        }
        self.subscriptions[sub["subscriptionId"]] = sub
        return sub

    def signed_media_path(self, media_id: str, *, ttl_ms: int | None = None) -> str:
        """`/v1/media/{id}?ttl=…&signature=…` relative to `{base}/api/media-store` (callbacks)."""
        ttl = ttl_ms if ttl_ms is not None else int((self.clock() + 3600) * 1000)
        return f"/v1/media/{media_id}?ttl={ttl}&signature={self._sign(media_id, ttl)}"

    def store_media(self, content: bytes, *, name: str, content_type: str) -> str:
        media_id = str(uuid.uuid4())
        self.media[media_id] = {
            "mediaId": media_id,
            "mediaName": name,
            "mediaContentType": content_type,
            "mediaSize": len(content),
            "content": content,
        }
        return media_id

    async def wait_idle(self) -> None:
        """Wait until every agent callback scheduled so far has been delivered."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- plumbing ----------------------------------------------------------------------

    def _sign(self, media_id: str, ttl: int) -> str:
        # HMAC-SHA512 hex: 128 characters, inside the spec's 124-128 signature length.
        return hmac.new(self._signing_key, f"{media_id}:{ttl}".encode(), hashlib.sha512).hexdigest()

    async def _enter(
        self, request: Request, *, authenticated: bool = True, token_endpoint: bool = False
    ) -> bytes:
        body = await request.body()
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.url.path,
                query=parse_qs(request.url.query),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
            )
        )
        if not token_endpoint or self.faults.include_token_endpoint:
            await self._apply_faults()
        if authenticated:
            self._check_auth(request)
        return body

    async def _apply_faults(self) -> None:
        faults = self.faults
        if faults.latency_s:
            await asyncio.sleep(faults.latency_s)
        if faults.fail_next:
            status = faults.fail_next.pop(0)
            raise _Reply(self._fault_response(status))
        if faults.throttle_next > 0:
            faults.throttle_next -= 1
            raise _Reply(self._fault_response(429))
        if faults.error_rate and self._random.random() < faults.error_rate:
            raise _Reply(self._fault_response(faults.error_status))

    def _fault_response(self, status: int) -> Response:
        if status == 429:
            return _problem(
                429,
                "Too Many Requests",
                "Spike limit exhausted",
                anchor="too-many-requests",
                headers={"Retry-After": self.faults.retry_after},
            )
        if status == 401:
            return self._unauthorized()
        if status >= 500:
            return _problem(
                status,
                "Internal Server Error",
                "An internal server error was encountered.",
                anchor="internal-error",
            )
        return _problem(status, "Error", "Injected failure", anchor="error")

    def _unauthorized(self) -> JSONResponse:
        return _problem(
            401,
            "Unauthorized",
            "This operation requires authentication. See https://developers.avayacloud.com/"
            "onecloud-ccaas/docs/how-to-authenticate-with-ccaas-apis",
            anchor="unauthorized",
        )

    def _check_auth(self, request: Request) -> None:
        if request.headers.get("appkey") != self.app_key:
            raise _Reply(self._unauthorized())
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expiry = self.tokens.get(token) if scheme.lower() == "bearer" else None
        if expiry is None or expiry <= self.clock():
            raise _Reply(self._unauthorized())

    def _check_account(self, account_id: str) -> None:
        if not ACCOUNT_PATTERN.match(account_id):
            raise _Reply(
                _constraint_violation(
                    [_violation("accountId", 'must match "^[a-zA-Z]{6}$"', 20006)]
                )
            )
        if account_id != self.account_id:
            raise _Reply(
                _problem(
                    403,
                    "Forbidden",
                    "According to the access control policy the current "
                    "user and/or accountId does not have permission to access this resource.",
                    anchor="forbidden",
                )
            )

    @staticmethod
    def _json(body: bytes) -> Any:
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _Reply(
                _problem(
                    400,
                    "Bad Request",
                    "The request body is not valid JSON",
                    anchor="constraint-violation",
                )
            ) from None

    @staticmethod
    def _require(body: Any, fields: dict[str, tuple[int, int]]) -> None:
        violations = []
        if not isinstance(body, dict):
            raise _Reply(_constraint_violation(detail="The body must be an object"))
        for name, (low, high) in fields.items():
            value = body.get(name)
            if value is None:
                violations.append(_violation(name, "must not be null"))
            elif not isinstance(value, str) or not low <= len(value) <= high:
                violations.append(_violation(name, f"size must be between {low} and {high}", 20003))
        if violations:
            raise _Reply(_constraint_violation(violations))

    def _schedule(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the app -----------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="AXP simulator")
        app.state.simulator = self

        app.add_exception_handler(_Reply, _reply)  # type: ignore[arg-type]
        app.add_api_route(
            "/api/auth/v1/{account_id}/protocol/openid-connect/token",
            self._token,
            methods=["POST"],
            name="token",
        )

        # --- custom messaging ----------------------------------------------------------

        cm = "/api/digital/custom-messaging/v1/accounts/{account_id}"

        app.add_api_route(
            cm + "/messages", self._send_message, methods=["POST"], name="send_message"
        )
        app.add_api_route(
            cm + "/provider-dialogs/{provider_dialog_id:path}:typing",
            self._typing,
            methods=["POST"],
            name="typing",
        )
        app.add_api_route(
            cm + "/provider-dialogs/{provider_dialog_id:path}:disconnect",
            self._disconnect,
            methods=["POST"],
            name="disconnect",
        )

        # --- subscriptions -------------------------------------------------------------

        subs = "/api/digital/webhook/v1/accounts/{account_id}/subscriptions"

        app.add_api_route(
            subs, self._list_subscriptions, methods=["GET"], name="list_subscriptions"
        )
        app.add_api_route(
            subs, self._create_subscription, methods=["POST"], name="create_subscription"
        )
        app.add_api_route(
            subs + "/{subscription_id}",
            self._get_subscription,
            methods=["GET"],
            name="get_subscription",
        )
        app.add_api_route(
            subs + "/{subscription_id}",
            self._update_subscription,
            methods=["PUT"],
            name="update_subscription",
        )
        app.add_api_route(
            subs + "/{subscription_id}",
            self._delete_subscription,
            methods=["DELETE"],
            name="delete_subscription",
        )

        # --- media store ---------------------------------------------------------------

        media = "/api/media-store/v1"

        app.add_api_route(
            media + "/accounts/{account_id}/media/signed-upload-uri",
            self._signed_upload_uri,
            methods=["POST"],
            name="signed_upload_uri",
        )
        app.add_api_route(
            media + "/accounts/{account_id}/media/{media_id}/signed-download-uri",
            self._signed_download_uri,
            methods=["GET"],
            name="signed_download_uri",
        )
        app.add_api_route(
            media + "/media/{media_id}", self._upload_media, methods=["POST"], name="upload_media"
        )
        app.add_api_route(
            media + "/media/{media_id}", self._get_media, methods=["GET"], name="get_media"
        )
        add_admin_routes(
            app,
            self.admin,
            enter=self._enter,
            body_of=self._json,
            problem=lambda status, detail: _problem(
                status, HTTPStatus(status).phrase, detail, anchor=HTTPStatus(status).phrase.lower()
            ),
        )
        return app

    # --- behaviour ---------------------------------------------------------------------

    async def _token(self, account_id: str, request: Request) -> Response:
        body = await self._enter(request, authenticated=False, token_endpoint=True)
        self.token_requests += 1
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return _problem(
                415,
                "Conflict",
                "The media-type in Content-type of the request is not supported by the server.",
                anchor="conflict",
            )
        if account_id != self.account_id:
            return _problem(404, "Not Found", "Unknown account", anchor="not-found")
        if form.get("grant_type") != "client_credentials":
            return _constraint_violation(
                [_violation("grant_type", "must be client_credentials")],
                detail="unsupported grant_type",
            )
        if (
            request.headers.get("appkey") != self.app_key
            or form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return self._unauthorized()
        value = secrets.token_urlsafe(32)
        self.tokens[value] = self.clock() + self.token_ttl_s
        return JSONResponse(
            {
                "access_token": value,
                "expires_in": self.token_ttl_s,
                "refresh_token": secrets.token_urlsafe(16),
                "token_type": "Bearer",
            }
        )

    async def _send_message(self, account_id: str, request: Request) -> Response:
        body = self._json(await self._enter(request))
        self._check_account(account_id)
        self._require(
            body,
            {
                "channelProviderId": (3, 256),
                "channelId": (3, 50),
                "businessAccountName": (3, 256),
            },
        )
        violations = []
        identifiers = body.get("customerIdentifiers")
        if not isinstance(identifiers, dict) or not identifiers:
            violations.append(_violation("customerIdentifiers", "must not be empty"))
        element = body.get("body")
        if not isinstance(element, dict) or not element.get("elementType"):
            violations.append(_violation("body.elementType", "must not be null"))
        for index, attachment in enumerate(body.get("attachments") or []):
            if not UUID_PATTERN.match(str(attachment.get("attachmentId", ""))):
                violations.append(
                    _violation(f"attachments[{index}].attachmentId", "is not valid", 20006)
                )
        if violations:
            return _constraint_violation(violations)
        key = (body.get("providerMessageId") or "", body.get("correlationId") or "")
        if all(key) and key in self._sent:
            return JSONResponse(self._sent[key])
        answer = self._accept_customer_message(body)
        if all(key):
            self._sent[key] = answer
        return JSONResponse(answer)

    async def _typing(self, account_id: str, provider_dialog_id: str, request: Request) -> Response:
        body = self._json(await self._enter(request))
        self._check_account(account_id)
        self._require(body, {"channelProviderId": (3, 256), "businessAccountName": (3, 256)})
        self.typing.append({"providerDialogId": provider_dialog_id, **body})
        return Response(status_code=204)

    async def _disconnect(
        self, account_id: str, provider_dialog_id: str, request: Request
    ) -> Response:
        body = self._json(await self._enter(request))
        self._check_account(account_id)
        self._require(body, {"channelProviderId": (3, 256), "businessAccountName": (3, 256)})
        reason = body.get("reason")
        if reason is not None and reason not in (
            "USER_CLOSED",
            "USER_INACTIVE",
            "SYSTEM_CLOSED",
            "UNKNOWN",
        ):
            return _constraint_violation(
                [_violation("reason", "is not valid", 20006)], detail="invalid reason"
            )
        self.dialogs.pop(provider_dialog_id, None)
        answer = {
            "providerDialogId": provider_dialog_id,
            **body,
            "correlationId": body.get("correlationId") or str(uuid.uuid4()),
        }
        self.disconnects.append(answer)
        return JSONResponse(answer)

    async def _list_subscriptions(self, account_id: str, request: Request) -> Response:
        await self._enter(request)
        self._check_account(account_id)
        wanted = request.query_params.get("channelProviderId")
        return JSONResponse(
            [
                s
                for s in self.subscriptions.values()
                if wanted is None or s["channelProviderId"] == wanted
            ]
        )

    async def _create_subscription(self, account_id: str, request: Request) -> Response:
        body = self._json(await self._enter(request))
        self._check_account(account_id)
        self._validate_subscription(body)
        created = self.add_subscription(
            body["channelProviderId"], body["callbackUrl"], body["eventTypes"]
        )
        return JSONResponse(created, status_code=201)

    async def _get_subscription(
        self, account_id: str, subscription_id: str, request: Request
    ) -> Response:
        await self._enter(request)
        self._check_account(account_id)
        return JSONResponse(self._subscription(subscription_id))

    async def _update_subscription(
        self, account_id: str, subscription_id: str, request: Request
    ) -> Response:
        body = self._json(await self._enter(request))
        self._check_account(account_id)
        current = self._subscription(subscription_id)
        self._validate_subscription(body)
        current.update(
            {
                "channelProviderId": body["channelProviderId"],
                "callbackUrl": body["callbackUrl"],
                "eventTypes": list(body["eventTypes"]),
            }
        )
        return JSONResponse(current)

    async def _delete_subscription(
        self, account_id: str, subscription_id: str, request: Request
    ) -> Response:
        await self._enter(request)
        self._check_account(account_id)
        self._subscription(subscription_id)
        del self.subscriptions[subscription_id]
        return Response(status_code=204)

    async def _signed_upload_uri(self, account_id: str, request: Request) -> Response:
        body = self._json(await self._enter(request))
        self._check_account(account_id)
        self._require(body, {"mediaName": (1, 255), "mediaContentType": (1, 255)})
        size = body.get("mediaSize")
        if not isinstance(size, int | float) or size < 1:
            return _constraint_violation(
                [_violation("mediaSize", "must be greater than or equal to 1")],
                detail="invalid mediaSize",
            )
        media_id = str(uuid.uuid4())
        self.media[media_id] = {
            "mediaId": media_id,
            "mediaName": body["mediaName"],
            "mediaContentType": body["mediaContentType"],
            "mediaSize": size,
            "content": None,
        }
        uri = f"{self.base_url}/api/media-store{self.signed_media_path(media_id)}"
        return JSONResponse(
            {
                **{k: v for k, v in self.media[media_id].items() if k != "content"},
                "uploadSignedUri": uri,
            }
        )

    async def _signed_download_uri(
        self, account_id: str, media_id: str, request: Request
    ) -> Response:
        await self._enter(request)
        self._check_account(account_id)
        item = self._media(media_id)
        return JSONResponse(
            {
                **{k: v for k, v in item.items() if k != "content"},
                "downloadSignedUri": self.signed_media_path(media_id),
            }
        )

    async def _upload_media(self, media_id: str, request: Request) -> Response:
        await self._enter(request, authenticated=False)
        item = self._check_signature(media_id, request)
        form = await request.form()
        upload = form.get("mediaFile")
        if upload is None or isinstance(upload, str):
            return _constraint_violation(
                [_violation("mediaFile", "must not be null")], detail="mediaFile is required"
            )
        content = await upload.read()
        if len(content) != int(item["mediaSize"]):
            return _constraint_violation(
                [_violation("mediaFile", "size must equal mediaSize")],
                detail="size differs from mediaSize",
            )
        item["content"] = content
        return JSONResponse({"mediaId": media_id, "mediaName": item["mediaName"]}, status_code=202)

    async def _get_media(self, media_id: str, request: Request) -> Response:
        await self._enter(request, authenticated=False)
        item = self._check_signature(media_id, request)
        if item["content"] is None:
            return Response(status_code=204)
        return Response(
            item["content"],
            media_type=item["mediaContentType"],
            headers={"content-disposition": f'attachment; filename="{item["mediaName"]}"'},
        )

    def _validate_subscription(self, body: Any) -> None:
        self._require(body, {"channelProviderId": (3, 256), "callbackUrl": (1, 2048)})
        types = body.get("eventTypes")
        if (
            not isinstance(types, list)
            or not 1 <= len(types) <= 6
            or any(t not in SUBSCRIPTION_EVENT_TYPES for t in types)
        ):
            raise _Reply(
                _constraint_violation(
                    [_violation("eventTypes", "is not valid", 20006)], detail="invalid eventTypes"
                )
            )

    def _subscription(self, subscription_id: str) -> dict[str, Any]:
        found = self.subscriptions.get(subscription_id)
        if found is None:
            raise _Reply(
                _problem(
                    404,
                    "Not Found",
                    "Either there is no API method associated with the URL "
                    "path of the request, or the request refers to one or more resources "
                    "that were not found.",
                    anchor="not-found",
                )
            )
        return found

    def _media(self, media_id: str) -> dict[str, Any]:
        found = self.media.get(media_id)
        if found is None:
            raise _Reply(
                _problem(
                    404,
                    "Internal Server Error",
                    "No data found for given Id",
                    anchor="internal-error",
                )
            )
        return found

    def _check_signature(self, media_id: str, request: Request) -> dict[str, Any]:
        # The signed media operations declare no security: the signature is the credential.
        # A presigned URL on object storage refuses a second authentication method.
        if "authorization" in request.headers or "appkey" in request.headers:
            raise _Reply(
                _constraint_violation(
                    [_violation("authorization", "only one auth mechanism allowed", 20006)],
                    detail="a signed media URL must not carry Authorization or appkey",
                )
            )
        ttl_text = request.query_params.get("ttl", "")
        signature = request.query_params.get("signature", "")
        if not ttl_text.isdigit() or not hmac.compare_digest(
            signature, self._sign(media_id, int(ttl_text))
        ):
            raise _Reply(
                _constraint_violation(
                    [_violation("signature", "is not valid", 20006)], detail="invalid signature"
                )
            )
        if int(ttl_text) < self.clock() * 1000:
            raise _Reply(
                _constraint_violation(
                    [_violation("ttl", "has expired", 20006)], detail="signature expired"
                )
            )
        return self._media(media_id)

    def _accept_customer_message(self, body: dict[str, Any]) -> dict[str, Any]:
        provider_dialog_id = body.get("providerDialogId") or f"sim-{uuid.uuid4()}"
        dialog = self.dialogs.get(provider_dialog_id)
        if dialog is None:
            dialog = self.dialogs[provider_dialog_id] = {
                "engagementId": str(uuid.uuid4()),
                "dialogId": str(uuid.uuid4()),
                "sessionId": str(uuid.uuid4()),
                "customerParticipantId": str(uuid.uuid4()),
                "customerConnectionId": str(uuid.uuid4()),
                "messageIndex": 0,
            }
        now = _now_iso()
        answer = {
            "messageId": str(uuid.uuid4()),
            "accountId": self.account_id,
            "dialogId": dialog["dialogId"],
            "engagementId": dialog["engagementId"],
            "status": "SENT",
            "sessionId": dialog["sessionId"],
            "businessAccountName": body["businessAccountName"],
            "customerIdentifiers": body["customerIdentifiers"],
            "channelProviderId": body["channelProviderId"],
            "channelId": body["channelId"],
            "senderParticipantId": dialog["customerParticipantId"],
            "senderParticipantName": body.get("senderName") or "Customer",
            "senderParticipantType": "CUSTOMER",
            "body": body["body"],
            "messageIndex": dialog["messageIndex"],
            "providerDialogId": provider_dialog_id,
            "receivedAt": now,
            "lastUpdatedAt": now,
        }
        for name in (
            "headers",
            "customData",
            "engagementParameters",
            "providerSenderId",
            "providerMessageId",
            "providerParentMessageId",
            "correlationId",
            "fallbackText",
        ):
            if body.get(name) is not None:
                answer[name] = body[name]
        if body.get("attachments"):
            answer["attachments"] = [
                self._attachment(a["attachmentId"]) for a in body["attachments"]
            ]
        dialog["messageIndex"] += 1
        self.messages.append(answer)
        if self.agent:
            self._schedule(self._agent_answers(answer, dialog))
        return answer

    def _attachment(self, media_id: str) -> dict[str, Any]:
        item = self.media.get(media_id, {})
        return {
            "attachmentId": media_id,
            "name": item.get("mediaName", "attachment"),
            "contentType": item.get("mediaContentType", "application/octet-stream"),
            "size": int(item.get("mediaSize", 0)),
            "url": self.signed_media_path(media_id),
        }

    async def _agent_answers(self, customer: dict[str, Any], dialog: dict[str, Any]) -> None:
        provider = customer["channelProviderId"]
        targets = [s for s in self.subscriptions.values() if s["channelProviderId"] == provider]
        customer_participant = {
            "participantId": dialog["customerParticipantId"],
            "participantType": "CUSTOMER",
            "displayName": customer["senderParticipantName"],
            "connectionId": dialog["customerConnectionId"],
            "channelProviderId": provider,
        }
        if customer.get("providerSenderId"):
            customer_participant["providerParticipantId"] = customer["providerSenderId"]
        envelope = {"correlationId": customer.get("correlationId") or str(uuid.uuid4())}
        delivered = {
            "eventType": "MESSAGES",
            **envelope,
            "eventDate": _now_iso(),
            **{
                k: v
                for k, v in customer.items()
                if k not in ("customerIdentifiers", "correlationId")
            },
            "status": "DELIVERED",
        }
        text = ((customer.get("body") or {}).get("elementText") or {}).get("text", "")
        reply = {
            "eventType": "MESSAGES",
            **envelope,
            "eventDate": _now_iso(),
            "messageId": str(uuid.uuid4()),
            "accountId": self.account_id,
            "dialogId": dialog["dialogId"],
            "engagementId": dialog["engagementId"],
            "status": "DELIVERED",
            "sessionId": dialog["sessionId"],
            "businessAccountName": customer["businessAccountName"],
            "channelProviderId": provider,
            "channelId": customer["channelId"],
            "providerDialogId": customer["providerDialogId"],
            "senderParticipantId": str(uuid.UUID(int=self._random.getrandbits(128))),
            "senderParticipantName": self.agent_name,
            "senderParticipantType": "AGENT",
            "body": {
                "elementType": "text",
                "elementText": {"text": f"Agent reply to: {text}", "textFormat": "PLAINTEXT"},
            },
            "messageIndex": dialog["messageIndex"],
            "recipientParticipants": [customer_participant],
            "receivedAt": _now_iso(),
            "lastUpdatedAt": _now_iso(),
        }
        if customer.get("headers"):
            reply["headers"] = customer["headers"]
        dialog["messageIndex"] += 1
        for subscription in targets:
            types = set(subscription["eventTypes"])
            if types & CUSTOMER_MESSAGE_TYPES:
                await self._post_callback(subscription["callbackUrl"], delivered)
            if types & AGENT_MESSAGE_TYPES:
                await self._post_callback(subscription["callbackUrl"], reply)

    async def _post_callback(self, url: str, event: dict[str, Any]) -> None:
        client = self.callback_client
        owned = client is None
        client = client or httpx.AsyncClient(timeout=5.0)
        try:
            response = await client.post(url, json=event)
            self.callbacks.append(
                RecordedCallback(url=url, event=event, status=response.status_code)
            )
        except httpx.HTTPError as exc:
            self.callbacks.append(
                RecordedCallback(url=url, event=event, status=None, error=type(exc).__name__)
            )
        finally:
            if owned:
                await client.aclose()


def create_axp_simulator(**options: Any) -> FastAPI:
    """The simulator app; its state (records, faults, tokens) is `app.state.simulator`."""
    return AxpSimulator(**options).app
