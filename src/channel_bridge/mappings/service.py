"""Channel mappings and integrations: the one code path for the admin API, the CLI and AXP.

`IntegrationService.apply_integration_change` is what the AXP lifecycle callback, the admin
API and the CLI all call: it stores the change through the inbox, so the integration row,
the channels it disables and the deliveries it queues commit together, once.

A lifecycle callback that cannot be read as one change is never refused (AXP would fail the
admin's operation): `hold_for_review` stores it as an inbox event in the `needs_review`
status, and `resolve_held` applies the change a person decided on through that same path.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.db.base import utcnow
from channel_bridge.db.engine import after_commit
from channel_bridge.db.models import Channel, InboxEvent, Integration
from channel_bridge.errors import Conflict, NotFound, ServiceUnavailable, Unprocessable
from channel_bridge.mappings.repository import (
    ChannelRepository,
    HeldCallbackRepository,
    IntegrationRepository,
    notify_channels_changed,
)
from channel_bridge.mappings.schemas import (
    ChannelCreate,
    ChannelOut,
    ChannelUpdate,
    HeldCallbackOut,
    HeldCallbackResolve,
    IntegrationOut,
)
from channel_bridge.ops.logging import get_logger
from channel_bridge.relay.envelope import DeliveryRequest
from channel_bridge.relay.inbox import Inbox
from channel_bridge.security import SecretBox, SecretBoxError

log = get_logger(__name__)

IntegrationAction = Literal["created", "updated", "deleted"]
# Who made a change: stored on the integration row and named in a disabled channel's reason.
ChangeSource = Literal["callback", "admin", "cli"]

INTEGRATION_INBOX_SOURCE = "axp.integration"
# Inbox kind and status of a callback stored but not applied; closed as handled or ignored.
NEEDS_REVIEW = HeldCallbackRepository.NEEDS_REVIEW
RESOLVED_STATUS = "handled"
DISMISSED_STATUS = "ignored"
INTEGRATION_FIELDS = ("name", "account_id", "channel_provider_id")

_SOURCE_WORDS = {"callback": "AXP callback", "admin": "admin API", "cli": "CLI"}


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- channels -------------------------------------------------------------------------


class ChannelService:
    """Create, change, disable and remove channel mappings; secrets stay encrypted."""

    def __init__(
        self,
        *,
        secret_box: SecretBox | None,
        now: Callable[[], datetime] = utcnow,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.secret_box = secret_box
        self.now = now
        # Called after each committed write (e.g. to clear the webhook's channel cache).
        self.on_change = on_change or (lambda: None)

    async def _flush(self, session: AsyncSession) -> None:
        """Flush a channel write; when the caller commits it, every process's channel cache
        hears of it (NOTIFY) and this one's `on_change` runs."""
        await notify_channels_changed(session)
        await session.flush()
        after_commit(session, self.on_change)

    async def list_channels(
        self, session: AsyncSession, *, integration_id: str | None = None
    ) -> Sequence[Channel]:
        """Channel mappings (of one integration if given), ordered by nexus channel id."""
        return await ChannelRepository(session).list_all(integration_id=integration_id)

    async def get(self, session: AsyncSession, nexus_channel_id: str) -> Channel:
        """The channel mapping, or NotFound."""
        channel = await ChannelRepository(session).get_by_nexus_channel_id(nexus_channel_id)
        if channel is None:
            raise NotFound(f"No channel mapping for nexus_channel_id {nexus_channel_id!r}")
        return channel

    async def create(self, session: AsyncSession, data: ChannelCreate) -> Channel:
        """Store a new mapping: 409 if the nexus channel id is taken, 422 for a bad integration."""
        repo = ChannelRepository(session)
        if await repo.get_by_nexus_channel_id(data.nexus_channel_id) is not None:
            raise Conflict(f"A channel mapping for {data.nexus_channel_id!r} already exists")
        account_id, provider_id = await self._check_integration(
            session, data.axp_integration_id, data.axp_account_id, data.axp_channel_provider_id
        )
        now = self.now()
        channel = Channel(
            nexus_channel_id=data.nexus_channel_id,
            axp_account_id=account_id,
            axp_channel_provider_id=provider_id,
            axp_integration_id=data.axp_integration_id,
            axp_channel_id=data.axp_channel_id,
            customer_identifier_key=data.customer_identifier_key,
            backend=data.backend,
            enabled=data.enabled,
            disabled_reason=None if data.enabled else f"created disabled at {_stamp(now)}",
            webhook_secrets_encrypted=self._encrypt_list(data.webhook_secret_values()),
            api_secret_encrypted=self._encrypt(data.api_secret.get_secret_value())
            if data.api_secret
            else None,
            created_at=now,
            updated_at=now,
        )
        try:
            await repo.add(channel)
            await self._flush(session)
        except IntegrityError:
            # A concurrent create of the same id won the unique constraint.
            await session.rollback()
            raise Conflict(
                f"A channel mapping for {data.nexus_channel_id!r} already exists"
            ) from None
        log.info(
            "channel created",
            nexus_channel_id=channel.nexus_channel_id,
            integration_id=channel.axp_integration_id,
            backend=channel.backend,
        )
        return channel

    async def update(
        self,
        session: AsyncSession,
        nexus_channel_id: str,
        data: ChannelUpdate,
        *,
        source: ChangeSource,
    ) -> Channel:
        """Change the given fields; re-enabling needs a live integration."""
        channel = await self.get(session, nexus_channel_id)
        given = data.model_fields_set
        integration_id = data.axp_integration_id or channel.axp_integration_id
        needs_check = bool(
            given & {"axp_integration_id", "axp_account_id", "axp_channel_provider_id"}
        )
        enabling = data.enabled is True and not channel.enabled
        if needs_check or enabling:
            account_id, provider_id = await self._check_integration(
                session,
                integration_id,
                data.axp_account_id
                or (None if "axp_integration_id" in given else channel.axp_account_id),
                data.axp_channel_provider_id
                or (None if "axp_integration_id" in given else channel.axp_channel_provider_id),
            )
            channel.axp_integration_id = integration_id
            channel.axp_account_id = account_id
            channel.axp_channel_provider_id = provider_id
        if data.axp_channel_id is not None:
            channel.axp_channel_id = data.axp_channel_id
        if data.customer_identifier_key is not None:
            channel.customer_identifier_key = data.customer_identifier_key
        now = self.now()
        if data.enabled is True:
            channel.enabled, channel.disabled_reason = True, None
        elif data.enabled is False and channel.enabled:
            channel.enabled = False
            channel.disabled_reason = f"disabled via {_SOURCE_WORDS[source]} at {_stamp(now)}"
        secrets = data.webhook_secret_values()
        if secrets is not None:
            channel.webhook_secrets_encrypted = self._encrypt_list(secrets)
        if data.api_secret is not None:
            channel.api_secret_encrypted = self._encrypt(data.api_secret.get_secret_value())
        channel.updated_at = now
        await self._flush(session)
        log.info("channel updated", nexus_channel_id=nexus_channel_id, fields=sorted(given))
        return channel

    async def disable(
        self,
        session: AsyncSession,
        nexus_channel_id: str,
        *,
        reason: str | None,
        source: ChangeSource,
    ) -> Channel:
        """Stop relaying for this channel (its webhooks get 404); the mapping and history stay."""
        channel = await self.get(session, nexus_channel_id)
        now = self.now()
        channel.enabled = False
        channel.disabled_reason = reason or f"disabled via {_SOURCE_WORDS[source]} at {_stamp(now)}"
        channel.updated_at = now
        await self._flush(session)
        log.info("channel disabled", nexus_channel_id=nexus_channel_id)
        return channel

    async def remove(self, session: AsyncSession, nexus_channel_id: str) -> None:
        """Delete the mapping together with its conversations and message links."""
        channel = await self.get(session, nexus_channel_id)
        await ChannelRepository(session).remove(channel)
        await self._flush(session)
        log.info("channel removed", nexus_channel_id=nexus_channel_id)

    def to_out(self, channel: Channel) -> ChannelOut:
        """The operator view: secrets only as presence and count."""
        count: int | None = 0
        if channel.webhook_secrets_encrypted:
            count = None
            if self.secret_box is not None:
                try:
                    count = len(self.secret_box.decrypt_list(channel.webhook_secrets_encrypted))
                except (SecretBoxError, ValueError):
                    count = None
        return ChannelOut(
            id=channel.id,
            nexus_channel_id=channel.nexus_channel_id,
            axp_account_id=channel.axp_account_id,
            axp_channel_provider_id=channel.axp_channel_provider_id,
            axp_integration_id=channel.axp_integration_id,
            axp_channel_id=channel.axp_channel_id,
            customer_identifier_key=channel.customer_identifier_key,
            backend=channel.backend,
            enabled=channel.enabled,
            disabled_reason=channel.disabled_reason,
            has_webhook_secret=count != 0,
            webhook_secret_count=count,
            has_api_secret=bool(channel.api_secret_encrypted),
            created_at=channel.created_at,
            updated_at=channel.updated_at,
        )

    async def _check_integration(
        self,
        session: AsyncSession,
        integration_id: str,
        account_id: str | None,
        channel_provider_id: str | None,
    ) -> tuple[str, str]:
        """The account and channel provider to store, checked against the integration."""
        integration = await IntegrationRepository(session).get_fresh(integration_id)
        if integration is None:
            raise Unprocessable(
                "The integration is not known",
                errors=[
                    {
                        "field": "axp_integration_id",
                        "message": f"unknown integration {integration_id!r}: create it first "
                        "(AXP lifecycle callback, /admin/v1/integrations or `integrations add`)",
                    }
                ],
            )
        if integration.status == "deleted":
            when = _stamp(integration.deleted_at) if integration.deleted_at else "an unknown time"
            raise Unprocessable(
                "The integration was deleted",
                errors=[
                    {
                        "field": "axp_integration_id",
                        "message": f"integration {integration_id!r} was deleted at {when}",
                    }
                ],
            )
        errors = []
        account_id = account_id or integration.account_id
        provider_id = channel_provider_id or integration.channel_provider_id
        if account_id is None:
            errors.append(
                {
                    "field": "axp_account_id",
                    "message": "required: the integration does not carry an account id",
                }
            )
        elif integration.account_id and account_id != integration.account_id:
            errors.append(
                {
                    "field": "axp_account_id",
                    "message": "does not match the integration's account "
                    f"{integration.account_id!r}",
                }
            )
        if provider_id is None:
            errors.append(
                {
                    "field": "axp_channel_provider_id",
                    "message": "required: the integration does not carry a channel provider id",
                }
            )
        elif integration.channel_provider_id and provider_id != integration.channel_provider_id:
            errors.append(
                {
                    "field": "axp_channel_provider_id",
                    "message": "does not match the integration's channel provider "
                    f"{integration.channel_provider_id!r}",
                }
            )
        if errors:
            raise Unprocessable("The channel does not fit its integration", errors=errors)
        assert account_id is not None and provider_id is not None
        return account_id, provider_id

    def _box(self) -> SecretBox:
        if self.secret_box is None:
            raise ServiceUnavailable(
                "BRIDGE_SECRET_KEY is not set, so channel secrets cannot be stored"
            )
        return self.secret_box

    def _encrypt(self, value: str) -> str:
        return self._box().encrypt(value)

    def _encrypt_list(self, values: list[str] | None) -> str | None:
        if not values:
            return None
        return self._box().encrypt_list(values)


# --- integrations ---------------------------------------------------------------------


class IntegrationChangePlanner(Protocol):
    """Which deliveries an integration change queues beside its row (in its transaction).

    The bridge decides (`bridge/integrations.py`: the Akixi mirror and the AXP notification
    subscription); this module only stores the change and hands the row over.
    """

    def upserted(
        self, row: Integration, action: Literal["created", "updated"], changed: list[str]
    ) -> list[DeliveryRequest]:
        """`row` is active: created (or back after a delete) or updated (`changed` fields)."""
        ...

    def deleted(self, row: Integration) -> list[DeliveryRequest]:
        """`row` is deleted now: it was active, or is first heard of as deleted (its mirror
        may exist all the same)."""
        ...


@dataclass
class IntegrationChange:
    """What one call to `apply_integration_change` did (nothing, for a duplicate)."""

    integration_id: str
    action: IntegrationAction
    is_new: bool
    ack: dict[str, Any] | None
    inbox_event_id: int
    delivery_ids: list[int] = field(default_factory=list)
    disabled_channels: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)


@dataclass
class HeldCallback:
    """What `hold_for_review` stored (or found already stored, for a repeated callback)."""

    inbox_event_id: int
    is_new: bool
    ack: dict[str, Any]


class IntegrationService:
    """The one code path for integration changes (AXP callback, admin API, CLI)."""

    def __init__(
        self,
        *,
        inbox: Inbox,
        sessionmaker: async_sessionmaker[AsyncSession],
        planner: IntegrationChangePlanner,
        now: Callable[[], datetime] = utcnow,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.inbox = inbox
        self.sessionmaker = sessionmaker
        self.planner = planner
        self.now = now
        # Called after a committed change that disabled channels (clears the channel cache).
        self.on_change = on_change or (lambda: None)

    async def apply_integration_change(
        self,
        *,
        action: IntegrationAction,
        integration_id: str,
        name: str | None = None,
        account_id: str | None = None,
        channel_provider_id: str | None = None,
        raw: dict[str, Any] | None,
        source: ChangeSource,
        external_id: str | None = None,
        raw_body: str | None = None,
        require_existing: bool | None = None,
        held_event_id: int | None = None,
    ) -> IntegrationChange:
        """Store the change, disable a deleted integration's channels and queue the mirror calls.

        `external_id` dedupes (callbacks pass a hash of the body; None means a fresh id).
        `require_existing`: True -> 404 unless it exists, False -> 409 if it exists, None -> upsert.
        `held_event_id`: the held callback this change resolves, closed in the same commit.
        A None field keeps the stored value.
        """
        values = {
            "name": name,
            "account_id": account_id,
            "channel_provider_id": channel_provider_id,
        }
        ack = {"status": "accepted", "integrationId": integration_id}
        outcome = IntegrationChange(
            integration_id=integration_id, action=action, is_new=False, ack=ack, inbox_event_id=0
        )

        async def within(session: AsyncSession, event_id: int) -> list[DeliveryRequest]:
            requests = await self._apply(session, outcome, values, raw, source, require_existing)
            if held_event_id is not None:
                await self._close_held(
                    session,
                    held_event_id,
                    status=RESOLVED_STATUS,
                    note=f"resolved as {action} of {integration_id} via {_SOURCE_WORDS[source]} "
                    f"at {_stamp(self.now())} (inbox event {event_id})",
                )
            return requests

        key = external_id or f"{source}:{uuid.uuid4().hex}"
        acceptance = await self._accept(key, action, integration_id, raw, raw_body, ack, within)
        if not acceptance.is_new and external_id is not None:
            # The same body again. A retry of a change already applied is answered as before;
            # but A->B->A->B sends B's body twice, and the second one is a new change.
            if await self._differs_from_stored(action, integration_id, values):
                stamp = await self._stored_updated_at(integration_id)
                acceptance = await self._accept(
                    f"{external_id}:after:{stamp}",
                    action,
                    integration_id,
                    raw,
                    raw_body,
                    ack,
                    within,
                )
        outcome.is_new = acceptance.is_new
        outcome.ack = acceptance.ack
        outcome.inbox_event_id = acceptance.inbox_event_id
        outcome.delivery_ids = list(acceptance.delivery_ids)
        if not acceptance.is_new:
            outcome.disabled_channels, outcome.changed = [], []
        if outcome.disabled_channels:
            self.on_change()
        log.info(
            "integration change",
            integration_id=integration_id,
            action=action,
            source=source,
            new=acceptance.is_new,
            deliveries=len(outcome.delivery_ids),
            disabled_channels=len(outcome.disabled_channels),
        )
        return outcome

    # --- callbacks held for review ---------------------------------------------------

    async def hold_for_review(
        self,
        *,
        external_id: str,
        method: str,
        body: Any,
        raw_body: str,
        problems: list[dict[str, str]],
        hints: dict[str, str],
    ) -> HeldCallback:
        """Store a callback that cannot be applied as it is, to be resolved by hand.

        `body` is the parsed JSON (None when empty or not storable as a JSON document);
        `hints` is what could be read (action, integration_id, ...), offered on resolution.
        """
        ack: dict[str, Any] = {"status": "accepted", "needsReview": True}
        if "integration_id" in hints:
            ack["integrationId"] = hints["integration_id"]
        note = "; ".join(f"{problem['field']}: {problem['message']}" for problem in problems)

        async def within(session: AsyncSession, event_id: int) -> list[DeliveryRequest]:
            await HeldCallbackRepository(
                session, source=INTEGRATION_INBOX_SOURCE
            ).mark_needs_review(event_id, note=note)
            return []

        acceptance = await self.inbox.accept(
            source=INTEGRATION_INBOX_SOURCE,
            # Apart from applied callbacks: once the cause is fixed, a retry can be applied.
            external_id=f"held:{external_id}",
            kind=NEEDS_REVIEW,
            payload={"method": method, "problems": problems, "hints": hints, "body": body},
            raw_body=raw_body,
            ack=ack,
            within=within,
        )
        if acceptance.is_new:
            log.warning(
                "integration callback held for review",
                inbox_event_id=acceptance.inbox_event_id,
                method=method,
                problems=note,
            )
        return HeldCallback(
            inbox_event_id=acceptance.inbox_event_id,
            is_new=acceptance.is_new,
            ack=acceptance.ack or ack,
        )

    async def list_held(self, session: AsyncSession) -> Sequence[InboxEvent]:
        """Callbacks waiting for review, oldest first."""
        return await HeldCallbackRepository(
            session, source=INTEGRATION_INBOX_SOURCE
        ).list_needing_review()

    async def get_held(self, session: AsyncSession, held_id: int) -> InboxEvent:
        """A held callback (also once resolved or dismissed), or NotFound."""
        event = await HeldCallbackRepository(session, source=INTEGRATION_INBOX_SOURCE).get(held_id)
        if event is None or event.kind != NEEDS_REVIEW:
            raise NotFound(f"No held integration callback {held_id}")
        return event

    async def resolve_held(
        self, *, held_id: int, resolution: HeldCallbackResolve, source: ChangeSource
    ) -> IntegrationChange:
        """Apply the change a person read in a held callback; fields default to its hints."""
        async with self.sessionmaker() as session:
            held = await self.get_held(session, held_id)
        self._require_open(held)
        payload = held.payload or {}
        hints = payload.get("hints") or {}
        given = resolution.model_dump(exclude={"action"}, exclude_none=True)
        values = {
            key: given.get(key, hints.get(key)) for key in ("integration_id", *INTEGRATION_FIELDS)
        }
        integration_id = values.pop("integration_id")
        if not integration_id:
            raise Unprocessable(
                "The held callback names no integration",
                errors=[{"field": "integration_id", "message": "required for this callback"}],
            )
        body = payload.get("body")
        return await self.apply_integration_change(
            action=resolution.action,
            integration_id=integration_id,
            **values,
            raw=body if isinstance(body, dict) else None,
            source=source,
            external_id=f"resolution:{held_id}",
            raw_body=held.raw_body,
            held_event_id=held_id,
        )

    async def dismiss_held(
        self, session: AsyncSession, *, held_id: int, reason: str | None, source: ChangeSource
    ) -> InboxEvent:
        """Close a held callback without applying anything (e.g. a test call)."""
        note = f"dismissed via {_SOURCE_WORDS[source]} at {_stamp(self.now())}" + (
            f": {reason}" if reason else ""
        )
        await self.get_held(session, held_id)
        await self._close_held(session, held_id, status=DISMISSED_STATUS, note=note)
        await session.flush()
        return await self.get_held(session, held_id)

    async def _close_held(
        self, session: AsyncSession, held_id: int, *, status: str, note: str
    ) -> None:
        repo = HeldCallbackRepository(session, source=INTEGRATION_INBOX_SOURCE)
        if not await repo.close(held_id, status=status, note=note, at=self.now()):
            # Closed meanwhile (two operators at once): this transaction must not apply.
            held = await repo.get(held_id)
            if held is None:
                raise NotFound(f"No held integration callback {held_id}")
            self._require_open(held)
            raise Conflict(f"Held integration callback {held_id} could not be closed")

    @staticmethod
    def to_held_out(event: InboxEvent) -> HeldCallbackOut:
        payload = event.payload or {}
        return HeldCallbackOut(
            id=event.id,
            received_at=event.received_at,
            status=event.status,
            method=payload.get("method"),
            problems=payload.get("problems") or [],
            hints=payload.get("hints") or {},
            body=payload.get("body"),
            raw_body=event.raw_body,
            note=event.note,
            handled_at=event.handled_at,
        )

    @staticmethod
    def _require_open(held: InboxEvent) -> None:
        if held.status != NEEDS_REVIEW:
            raise Conflict(
                f"Held integration callback {held.id} is already {held.status}"
                + (f" ({held.note})" if held.note else "")
            )

    # --- integrations ------------------------------------------------------------------

    async def list_integrations(
        self, session: AsyncSession, *, include_deleted: bool = False
    ) -> Sequence[Integration]:
        """Integrations ordered by id; deleted ones only when asked."""
        return await IntegrationRepository(session).list_all(include_deleted=include_deleted)

    async def get(self, session: AsyncSession, integration_id: str) -> Integration:
        """The integration (also when deleted), or NotFound."""
        integration = await IntegrationRepository(session).get_fresh(integration_id)
        if integration is None:
            raise NotFound(f"No integration {integration_id!r}")
        return integration

    @staticmethod
    def to_out(integration: Integration) -> IntegrationOut:
        return IntegrationOut.model_validate(integration, from_attributes=True)

    async def _accept(
        self,
        key: str,
        action: str,
        integration_id: str,
        raw: dict[str, Any] | None,
        raw_body: str | None,
        ack: dict[str, Any],
        within: Any,
    ) -> Any:
        return await self.inbox.accept(
            source=INTEGRATION_INBOX_SOURCE,
            external_id=key,
            kind=action,
            payload={"action": action, "integration_id": integration_id, "raw": raw},
            raw_body=raw_body,
            ack=ack,
            within=within,
        )

    async def _apply(
        self,
        session: AsyncSession,
        outcome: IntegrationChange,
        values: dict[str, str | None],
        raw: dict[str, Any] | None,
        source: ChangeSource,
        require_existing: bool | None,
    ) -> list[DeliveryRequest]:
        integration_id = outcome.integration_id
        repo = IntegrationRepository(session)
        row = await repo.get_fresh(integration_id)
        now = self.now()
        if require_existing is True and (row is None or row.status == "deleted"):
            raise NotFound(f"No integration {integration_id!r}")
        if require_existing is False and row is not None and row.status == "active":
            raise Conflict(f"Integration {integration_id!r} already exists")
        given = {key: value for key, value in values.items() if value is not None}

        if row is None:
            status = "deleted" if outcome.action == "deleted" else "active"
            inserted = await repo.insert_if_new(
                {
                    "integration_id": integration_id,
                    **given,
                    "status": status,
                    "source": source,
                    "raw": raw,
                    "created_at": now,
                    "updated_at": now,
                    "deleted_at": now if status == "deleted" else None,
                }
            )
            row = await repo.get_fresh(integration_id)
            assert row is not None
            if inserted:
                if status == "active":
                    outcome.changed = sorted(given)
                    return self.planner.upserted(row, "created", outcome.changed)
                return self.planner.deleted(row)

        was_active = row.status == "active"
        outcome.changed = sorted(k for k, v in given.items() if getattr(row, k) != v)
        for key, value in given.items():
            setattr(row, key, value)
        row.source, row.raw, row.updated_at = source, raw, now

        if outcome.action == "deleted":
            reason = (
                f"integration {integration_id} deleted via {_SOURCE_WORDS[source]} at {_stamp(now)}"
            )
            outcome.disabled_channels = await ChannelRepository(session).disable_for_integration(
                integration_id, reason=reason, at=now
            )
            if outcome.disabled_channels:
                await notify_channels_changed(session)
            if not was_active:
                return []
            row.status, row.deleted_at = "deleted", now
            return self.planner.deleted(row)

        row.status, row.deleted_at = "active", None
        if not was_active:
            # Back after a delete: the Akixi entry is gone, so it is created again.
            outcome.changed = sorted(k for k in INTEGRATION_FIELDS if getattr(row, k) is not None)
            return self.planner.upserted(row, "created", outcome.changed)
        return self.planner.upserted(row, "updated", outcome.changed)

    async def _differs_from_stored(
        self, action: IntegrationAction, integration_id: str, values: dict[str, str | None]
    ) -> bool:
        async with self.sessionmaker() as session:
            row = await IntegrationRepository(session).get_fresh(integration_id)
        if row is None:
            return True
        if action == "deleted":
            return row.status != "deleted"
        if row.status == "deleted":
            return True
        return any(
            value is not None and getattr(row, key) != value for key, value in values.items()
        )

    async def _stored_updated_at(self, integration_id: str) -> str:
        async with self.sessionmaker() as session:
            row = await IntegrationRepository(session).get_fresh(integration_id)
        return row.updated_at.isoformat() if row is not None else "none"
