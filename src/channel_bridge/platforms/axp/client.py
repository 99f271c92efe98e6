"""AXP Digital - Custom Messaging 1.0.4: send a customer message, typing, disconnect."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError

from channel_bridge.platforms.axp.auth import AxpHttpClient
from channel_bridge.platforms.axp.errors import (
    AxpPermanentError,
    AxpRetryableError,
    checked_request,
)
from channel_bridge.platforms.axp.schemas import (
    AsyncMessage,
    DisconnectProviderDialog,
    DisconnectReason,
    SendAsyncMessage,
    TypingIndicator,
)

CUSTOM_MESSAGING_BASE = "/api/digital/custom-messaging/v1"


@dataclass(frozen=True, slots=True)
class SendMessageResult:
    """The ids AXP assigned; persist providerDialogId -> engagement/dialog from these."""

    message_id: str | None
    engagement_id: str | None
    dialog_id: str | None
    raw: dict[str, Any]


class AxpMessagingClient:
    """Calls made as the custom-messaging provider (the customer's side of the dialog)."""

    def __init__(self, http: AxpHttpClient, account_id: str) -> None:
        self._http = http
        self._account_path = f"{CUSTOM_MESSAGING_BASE}/accounts/{quote(account_id, safe='')}"
        self._messages_url = http.base_url.join(f"{self._account_path}/messages")

    async def send_message(self, message: SendAsyncMessage) -> SendMessageResult:
        """Send one customer message; AXP answers 200 with the ids synchronously."""
        # AXP has no idempotency key: correlationId (our delivery id) and providerMessageId are
        # how a retried send is recognised, in AXP's records and in our callbacks.
        if not message.correlationId or not message.providerMessageId:
            raise AxpPermanentError(
                "AXP send refused locally: correlationId and providerMessageId are required "
                "so that a retried send is recognisable"
            )
        content = await self._http.post_json(
            self._messages_url, message.to_wire_json(), operation="send message"
        )
        try:
            answer = AsyncMessage.model_validate_json(content)
        except (ValueError, ValidationError) as exc:
            # AXP accepted the message but its answer is unreadable; a retry may duplicate it,
            # which correlationId/providerMessageId make recognisable.
            raise AxpRetryableError(
                "AXP send message answered 2xx with an unreadable body"
            ) from exc
        return SendMessageResult(
            message_id=answer.messageId,
            engagement_id=answer.engagementId,
            dialog_id=answer.dialogId,
            raw=answer.model_dump(mode="json", by_alias=True),
        )

    async def typing(
        self,
        provider_dialog_id: str,
        *,
        channel_provider_id: str,
        business_account_name: str,
        correlation_id: str | None = None,
    ) -> None:
        """Tell the contact center the customer is typing (204)."""
        body = TypingIndicator(
            channelProviderId=channel_provider_id,
            businessAccountName=business_account_name,
            correlationId=correlation_id,
        )
        await checked_request(
            self._http,
            "POST",
            self._dialog_action(provider_dialog_id, "typing"),
            operation="typing indicator",
            json=body.to_wire(),
        )

    async def disconnect(
        self,
        provider_dialog_id: str,
        *,
        channel_provider_id: str,
        business_account_name: str,
        reason: DisconnectReason | None = None,
        correlation_id: str | None = None,
    ) -> dict[str, Any]:
        """Terminate the live AXP dialog of this conversation; returns AXP's echo (200)."""
        body = DisconnectProviderDialog(
            channelProviderId=channel_provider_id,
            businessAccountName=business_account_name,
            reason=reason,
            correlationId=correlation_id,
        )
        response = await checked_request(
            self._http,
            "POST",
            self._dialog_action(provider_dialog_id, "disconnect"),
            operation="disconnect dialog",
            json=body.to_wire(),
        )
        try:
            answer = response.json()
        except ValueError:
            return {}
        return answer if isinstance(answer, dict) else {}

    def _dialog_action(self, provider_dialog_id: str, action: str) -> str:
        # Path parameter limits from the spec (`providerDialogId`: 3-256 characters).
        if not 3 <= len(provider_dialog_id) <= 256:
            raise AxpPermanentError(
                f"providerDialogId must be 3-256 characters, got {len(provider_dialog_id)}"
            )
        dialog = quote(provider_dialog_id, safe="")
        return f"{self._account_path}/provider-dialogs/{dialog}:{action}"
