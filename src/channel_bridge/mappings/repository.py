"""SQL for channel mappings, integrations, conversations and message links."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    String,
    Table,
    TextClause,
    bindparam,
    case,
    delete,
    func,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from channel_bridge.db.base import UTCDateTime, utcnow
from channel_bridge.db.bulk import (
    among,
    dialect_insert,
    fetch_text,
    insert_rows,
    is_postgres,
    select_by_keys,
)
from channel_bridge.db.models import Channel, Conversation, InboxEvent, Integration, MessageLink
from channel_bridge.db.notifications import notify
from channel_bridge.relay.envelope import RowsNamingDeliveries

LINK_STATUSES = ("pending", "sent", "delivered", "read", "failed")
# A late "delivered" must not overwrite "read": a link's status only moves forward.
_LINK_RANK = {status: rank for rank, status in enumerate(LINK_STATUSES)}
_BELOW_SENT = [status for status, rank in _LINK_RANK.items() if rank < _LINK_RANK["sent"]]

# NOTIFY channel of every write to channel mappings: each process's channel cache listens.
CHANNELS_CHANGED = "bridge_channels"

conversation_table = cast(Table, Conversation.__table__)
link_table = cast(Table, MessageLink.__table__)


def _record_activity() -> Any:
    c = conversation_table.c
    at = bindparam("b_at", type_=UTCDateTime())
    return (
        update(conversation_table)
        .where(c.id == bindparam("b_conversation_id"))
        .values(
            axp_engagement_id=func.coalesce(
                bindparam("b_engagement_id", type_=String()), c.axp_engagement_id
            ),
            axp_dialog_id=func.coalesce(bindparam("b_dialog_id", type_=String()), c.axp_dialog_id),
            last_activity_at=case(
                (or_(c.last_activity_at.is_(None), c.last_activity_at < at), at),
                else_=c.last_activity_at,
            ),
        )
    )


def _mark_sent() -> Any:
    c = link_table.c
    # Literal statuses: an IN list of bound values cannot be used with executemany.
    is_behind = or_(*(c.status == literal_column(f"'{status}'") for status in _BELOW_SENT))
    return (
        update(link_table)
        .where(c.delivery_id == bindparam("b_delivery_id"))
        .values(
            axp_message_id=func.coalesce(
                bindparam("b_axp_message_id", type_=String()), c.axp_message_id
            ),
            nexus_message_id=func.coalesce(
                bindparam("b_nexus_message_id", type_=String()), c.nexus_message_id
            ),
            status=case((is_behind, "sent"), else_=c.status),
            status_detail=case((is_behind, None), else_=c.status_detail),
            status_updated_at=case(
                (is_behind, bindparam("b_at", type_=UTCDateTime())), else_=c.status_updated_at
            ),
        )
    )


# The per-send bookkeeping statements, built once: constructing the expressions on every
# batch was a measurable share of the outcome write. SQLite: executemany.
_RECORD_ACTIVITY = _record_activity()
_MARK_SENT = _mark_sent()

# PostgreSQL: one `UPDATE ... FROM unnest(...)` per outcome batch, one statement text for any
# batch size. The executemany form was one execution per sent message, the largest
# per-message cost left in PostgreSQL (64 of 428 us per Nexus webhook, docs/performance.md).
# `FROM` joins each target row once, so the rows are merged per key before (`_merged`). The
# arrays are in key order and the plan walks them (a nested loop over the primary key or
# delivery index once the tables are analyzed), so batches lock rows in the same order as the
# executemany did; were two plans ever to differ, PostgreSQL's deadlock detector fails one
# batch and the worker retries its outcomes one by one (relay/worker.py).
_PG_RECORD_ACTIVITY = text(
    """
    UPDATE conversations AS c
    SET axp_engagement_id = COALESCE(b.engagement_id, c.axp_engagement_id),
        axp_dialog_id = COALESCE(b.dialog_id, c.axp_dialog_id),
        last_activity_at = GREATEST(c.last_activity_at, b.at)
    FROM unnest(CAST(:conversation_id AS bigint[]), CAST(:engagement_id AS text[]),
                CAST(:dialog_id AS text[]), CAST(:at AS timestamptz[]))
         AS b(conversation_id, engagement_id, dialog_id, at)
    WHERE c.id = b.conversation_id
    """
)
_PG_LINK_BEHIND = "l.status IN ({})".format(", ".join(f"'{status}'" for status in _BELOW_SENT))
_PG_MARK_SENT = text(
    f"""
    UPDATE message_links AS l
    SET axp_message_id = COALESCE(b.axp_message_id, l.axp_message_id),
        nexus_message_id = COALESCE(b.nexus_message_id, l.nexus_message_id),
        status = CASE WHEN {_PG_LINK_BEHIND} THEN 'sent' ELSE l.status END,
        status_detail = CASE WHEN {_PG_LINK_BEHIND} THEN NULL ELSE l.status_detail END,
        status_updated_at = CASE WHEN {_PG_LINK_BEHIND} THEN b.at ELSE l.status_updated_at END
    FROM unnest(CAST(:delivery_id AS bigint[]), CAST(:axp_message_id AS text[]),
                CAST(:nexus_message_id AS text[]), CAST(:at AS timestamptz[]))
         AS b(delivery_id, axp_message_id, nexus_message_id, at)
    WHERE l.delivery_id = b.delivery_id
    """  # noqa: S608 - the statuses are this module's constants, never input
)


def _merged(
    rows: Sequence[dict[str, Any]],
    key: str,
    latest: tuple[str, ...],
    at: Callable[[datetime, datetime], datetime],
) -> list[dict[str, Any]]:
    """One row per `key`, sorted by it, as applying the rows one after another leaves it: the
    last non-None value of each `latest` field, and `at(kept, next)` of their moments."""
    merged: dict[Any, dict[str, Any]] = {}
    for row in rows:
        found = merged.get(row[key])
        if found is None:
            merged[row[key]] = {key: row[key], "at": row["at"], **{f: row.get(f) for f in latest}}
            continue
        found["at"] = at(found["at"], row["at"])
        for field in latest:
            if row.get(field) is not None:
                found[field] = row[field]
    return [merged[k] for k in sorted(merged)]


def _first(kept: datetime, _next: datetime) -> datetime:
    return kept


async def _update_many(
    session: AsyncSession, on_postgres: TextClause, on_sqlite: Any, rows: Sequence[dict[str, Any]]
) -> None:
    """PostgreSQL: one statement, an array per field (`:field`). SQLite: executemany of the
    per-row statement (`:b_field`)."""
    if is_postgres(session):
        await fetch_text(
            session, on_postgres, {field: [row[field] for row in rows] for field in rows[0]}
        )
        return
    await session.execute(on_sqlite, [{f"b_{k}": v for k, v in row.items()} for row in rows])


# `sent_nexus_message_ids` on PostgreSQL: one array parameter, one statement for any batch,
# and one index probe per message id, whatever the statistics say. As `nexus_message_id =
# ANY(...)`, statistics taken before the links had AXP ids made the planner read every sent
# link through the axp_message_id index (`IS NOT NULL`, thought to match one row) on every
# accepted batch; OFFSET 0 keeps the subquery from being flattened into that join again.
_SENT_NEXUS_MESSAGE_IDS_SQL = (
    "SELECT s.channel_id, s.nexus_message_id "
    "FROM unnest(CAST(:message_ids AS text[])) AS m(id) CROSS JOIN LATERAL ("
    "SELECT c.channel_id, l.nexus_message_id FROM message_links AS l "
    "JOIN conversations AS c ON c.id = l.conversation_id "
    "WHERE l.nexus_message_id = m.id AND l.direction = :direction "
    "AND l.axp_message_id IS NOT NULL OFFSET 0) AS s"
)
_PG_SENT_NEXUS_MESSAGE_IDS = text(_SENT_NEXUS_MESSAGE_IDS_SQL)

# The columns `ConversationRepository.latest_for` reads.
_LATEST_COLUMNS = (
    "id",
    "channel_id",
    "customer_address",
    "generation",
    "state",
    "provider_dialog_id",
)

# `latest_conversations_and_sent_messages` on PostgreSQL: `latest_for`'s lookup (one index
# probe per customer, `select_by_keys(latest_by=...)`) and `sent_nexus_message_ids`'s, as one
# statement. A conversation row has an id; a sent message's row has only its two columns.
_PG_LATEST_CONVERSATIONS_AND_SENT_MESSAGES = text(
    f"SELECT {', '.join(f'l.{name}' for name in _LATEST_COLUMNS)}, "  # noqa: S608 (constants)
    "CAST(NULL AS text) AS nexus_message_id "
    "FROM unnest(CAST(:channel_ids AS BIGINT[]), CAST(:customers AS VARCHAR(255)[])) "
    "AS k(channel_id, customer_address) CROSS JOIN LATERAL ("
    f"SELECT {', '.join(f't.{name}' for name in _LATEST_COLUMNS)} FROM conversations AS t "
    "WHERE t.channel_id = k.channel_id AND t.customer_address = k.customer_address "
    "ORDER BY t.generation DESC LIMIT 1) AS l "
    "UNION ALL "
    "SELECT NULL, sent.channel_id, NULL, NULL, NULL, NULL, sent.nexus_message_id "
    f"FROM ({_SENT_NEXUS_MESSAGE_IDS_SQL}) AS sent"
)

# A conversation as an AXP event is routed by it: `ConversationRepository.routes_by_dialog`.
_ROUTE_COLUMNS = ("id", "provider_dialog_id", "customer_address", "nexus_channel_id")
# Each as one index probe per key, whatever the statistics say (LATERAL ... OFFSET 0, as
# `_SENT_NEXUS_MESSAGE_IDS_SQL`): as `= ANY(...)`, statistics of smaller tables made the
# planner scan both tables whole (tests/mappings/test_lookup_plans.py).
_ROUTES_BY_DIALOG_SQL = (
    "SELECT r.id, r.provider_dialog_id, r.customer_address, r.nexus_channel_id "
    "FROM unnest(CAST(:provider_dialog_ids AS text[])) AS k(id) CROSS JOIN LATERAL ("
    "SELECT c.id, c.provider_dialog_id, c.customer_address, ch.nexus_channel_id "
    "FROM conversations AS c JOIN channels AS ch ON ch.id = c.channel_id "
    "WHERE c.provider_dialog_id = k.id OFFSET 0) AS r"
)
_LINKED_AXP_MESSAGE_IDS_SQL = (
    "SELECT l.axp_message_id FROM unnest(CAST(:message_ids AS text[])) AS k(id) "
    "CROSS JOIN LATERAL (SELECT axp_message_id FROM message_links "
    "WHERE axp_message_id = k.id OFFSET 0) AS l"
)
_PG_ROUTES_BY_DIALOG = text(_ROUTES_BY_DIALOG_SQL)
# `routes_and_linked_messages` on PostgreSQL: both lookups, one statement. A route's row has
# an id; a linked message's row has only its AXP message id.
_PG_ROUTES_AND_LINKED_MESSAGES = text(
    f"SELECT {', '.join(f'route.{name}' for name in _ROUTE_COLUMNS)}, "  # noqa: S608 (constants)
    f"CAST(NULL AS text) AS axp_message_id FROM ({_ROUTES_BY_DIALOG_SQL}) AS route "
    "UNION ALL SELECT NULL, NULL, NULL, NULL, linked.axp_message_id "
    f"FROM ({_LINKED_AXP_MESSAGE_IDS_SQL}) AS linked"
)

_PG_LINKED_AXP_MESSAGE_IDS = text(_LINKED_AXP_MESSAGE_IDS_SQL)


async def notify_channels_changed(session: AsyncSession) -> None:
    """Tell every process's channel cache, when this transaction commits (PostgreSQL)."""
    await notify(await session.connection(), CHANNELS_CHANGED)


class ChannelRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_by_nexus_channel_id(self, nexus_channel_id: str) -> Channel | None:
        return await self.session.scalar(
            select(Channel).where(Channel.nexus_channel_id == nexus_channel_id)
        )

    async def get(self, channel_id: int) -> Channel | None:
        return await self.session.get(Channel, channel_id)

    async def list_enabled(self) -> Sequence[Channel]:
        rows = await self.session.scalars(
            select(Channel).where(Channel.enabled.is_(True)).order_by(Channel.nexus_channel_id)
        )
        return rows.all()

    async def list_all(
        self, *, integration_id: str | None = None, for_update: bool = False
    ) -> Sequence[Channel]:
        statement = select(Channel).order_by(Channel.nexus_channel_id)
        if for_update:
            statement = statement.with_for_update()
        if integration_id is not None:
            statement = statement.where(Channel.axp_integration_id == integration_id)
        return (await self.session.scalars(statement)).all()

    async def add(self, channel: Channel) -> Channel:
        self.session.add(channel)
        await self.session.flush()
        return channel

    async def remove(self, channel: Channel) -> None:
        await self.session.execute(delete(Channel).where(Channel.id == channel.id))

    async def nexus_channel_ids_of_conversations(
        self, conversation_ids: Collection[int]
    ) -> dict[int, str]:
        """Conversation id -> its channel's Nexus channel id."""
        if not conversation_ids:
            return {}
        rows = await self.session.execute(
            select(Conversation.id, Channel.nexus_channel_id)
            .join(Channel, Channel.id == Conversation.channel_id)
            .where(among(self.session, Conversation.id, conversation_ids))
        )
        return {conversation_id: nexus_channel_id for conversation_id, nexus_channel_id in rows}

    async def backends_of(self, nexus_channel_ids: Collection[str]) -> dict[str, str]:
        """Channel id -> its backend (nexus | genesys-cloud)."""
        if not nexus_channel_ids:
            return {}
        rows = await self.session.execute(
            select(Channel.nexus_channel_id, Channel.backend).where(
                among(self.session, Channel.nexus_channel_id, nexus_channel_ids)
            )
        )
        return {channel_id: backend for channel_id, backend in rows}

    async def disable_for_integration(
        self, integration_id: str, *, reason: str, at: datetime
    ) -> list[str]:
        """Disable every enabled channel of the integration; their nexus channel ids."""
        rows = await self.session.execute(
            update(Channel)
            .where(Channel.axp_integration_id == integration_id, Channel.enabled.is_(True))
            .values(enabled=False, disabled_reason=reason, updated_at=at)
            .returning(Channel.nexus_channel_id)
            .execution_options(synchronize_session=False)
        )
        return sorted(rows.scalars())


class IntegrationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, integration_id: str) -> Integration | None:
        return await self.session.get(Integration, integration_id)

    async def get_fresh(self, integration_id: str) -> Integration | None:
        """The row as committed now, not a copy cached in this session."""
        return await self.session.scalar(
            select(Integration)
            .where(Integration.integration_id == integration_id)
            .execution_options(populate_existing=True)
        )

    async def list_all(self, *, include_deleted: bool = False) -> Sequence[Integration]:
        statement = select(Integration).order_by(Integration.integration_id)
        if not include_deleted:
            statement = statement.where(Integration.status == "active")
        return (await self.session.scalars(statement)).all()

    async def insert_if_new(self, values: dict[str, Any]) -> bool:
        """Insert the row unless the id exists (a concurrent insert wins); True if inserted."""
        statement = (
            dialect_insert(self.session, cast(Table, Integration.__table__))
            .values(**values)
            .on_conflict_do_nothing(index_elements=["integration_id"])
            .returning(Integration.__table__.c.integration_id)
        )
        return (await self.session.execute(statement)).scalar_one_or_none() is not None

    async def known_channel_provider_ids(self, *, account_id: str | None = None) -> list[str]:
        """Channel provider ids of active integrations and enabled channels (AXP subscriptions)."""
        from_integrations = select(Integration.channel_provider_id).where(
            Integration.status == "active", Integration.channel_provider_id.is_not(None)
        )
        from_channels = select(Channel.axp_channel_provider_id).where(Channel.enabled.is_(True))
        if account_id is not None:
            from_integrations = from_integrations.where(
                (Integration.account_id.is_(None)) | (Integration.account_id == account_id)
            )
            from_channels = from_channels.where(Channel.axp_account_id == account_id)
        found = set((await self.session.scalars(from_integrations)).all())
        found |= set((await self.session.scalars(from_channels)).all())
        return sorted(value for value in found if value)


class HeldCallbackRepository:
    """Integration callbacks stored but not applied: inbox events in the `needs_review` status."""

    NEEDS_REVIEW = "needs_review"

    def __init__(self, session: AsyncSession, *, source: str) -> None:
        self.session = session
        self.source = source

    async def mark_needs_review(self, inbox_event_id: int, *, note: str) -> None:
        await self.session.execute(
            update(InboxEvent)
            .where(InboxEvent.id == inbox_event_id)
            .values(status=self.NEEDS_REVIEW, note=note)
        )

    async def list_needing_review(self) -> Sequence[InboxEvent]:
        """Oldest first: the order they arrived in is the order to look at them."""
        statement = (
            select(InboxEvent)
            .where(InboxEvent.source == self.source, InboxEvent.status == self.NEEDS_REVIEW)
            .order_by(InboxEvent.id)
        )
        return (await self.session.scalars(statement)).all()

    async def get(self, inbox_event_id: int) -> InboxEvent | None:
        """The held callback (in any status now), fresh from the database."""
        return await self.session.scalar(
            select(InboxEvent)
            .where(InboxEvent.id == inbox_event_id, InboxEvent.source == self.source)
            .execution_options(populate_existing=True)
        )

    async def close(self, inbox_event_id: int, *, status: str, note: str, at: datetime) -> bool:
        """Mark a held callback resolved or dismissed; False if it no longer needs review."""
        result = await self.session.execute(
            update(InboxEvent)
            .where(
                InboxEvent.id == inbox_event_id,
                InboxEvent.source == self.source,
                InboxEvent.status == self.NEEDS_REVIEW,
            )
            .values(status=status, note=note, handled_at=at)
        )
        return bool(cast(Any, result).rowcount)


class ConversationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, conversation_id: int) -> Conversation | None:
        return await self.session.get(Conversation, conversation_id)

    async def find_by_provider_dialog_id(self, provider_dialog_id: str) -> Conversation | None:
        return await self.session.scalar(
            select(Conversation).where(Conversation.provider_dialog_id == provider_dialog_id)
        )

    async def find_latest(self, channel_id: int, customer_address: str) -> Conversation | None:
        """The highest generation for this customer on this channel, open or closed."""
        return await self.session.scalar(
            select(Conversation)
            .where(
                Conversation.channel_id == channel_id,
                Conversation.customer_address == customer_address,
            )
            .order_by(Conversation.generation.desc())
            .limit(1)
            .execution_options(populate_existing=True)
        )

    async def find_open(self, channel_id: int, customer_address: str) -> Conversation | None:
        return await self.session.scalar(
            select(Conversation)
            .where(
                Conversation.channel_id == channel_id,
                Conversation.customer_address == customer_address,
                Conversation.state == "open",
            )
            .order_by(Conversation.generation.desc())
            .limit(1)
        )

    async def find_by_generation(
        self, channel_id: int, customer_address: str, generation: int
    ) -> Conversation | None:
        return await self.session.scalar(
            select(Conversation)
            .where(
                Conversation.channel_id == channel_id,
                Conversation.customer_address == customer_address,
                Conversation.generation == generation,
            )
            .execution_options(populate_existing=True)
        )

    async def insert_if_absent(self, values: dict[str, Any]) -> int | None:
        """Insert a conversation; None when a concurrent writer already holds its keys.

        No conflict target: either unique key (customer generation or providerDialogId)
        means the other writer won.
        """
        statement = (
            dialect_insert(self.session, conversation_table)
            .values(**values)
            .on_conflict_do_nothing()
            .returning(Conversation.__table__.c.id)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def latest_for(self, keys: Collection[tuple[int, str]]) -> dict[tuple[int, str], Any]:
        """The highest generation of each (channel id, customer address), open or closed."""
        if not keys:
            return {}
        rows = await select_by_keys(
            self.session,
            conversation_table,
            ("channel_id", "customer_address"),
            list(keys),
            _LATEST_COLUMNS,
            latest_by="generation",
        )
        return {(row.channel_id, row.customer_address): row for row in rows}

    async def insert_many_if_absent(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        """Insert conversations; those a concurrent writer already holds are left out.

        Sorted by key, so two batches opening the same conversations never wait in a cycle.
        """
        ordered = sorted(rows, key=lambda row: (row["channel_id"], row["customer_address"]))
        return await insert_rows(
            self.session,
            conversation_table,
            ordered,
            on_conflict_do_nothing=(),
            returning=("id", "channel_id", "customer_address", "generation", "provider_dialog_id"),
        )

    async def find_many_with_channel(
        self, provider_dialog_ids: Collection[str]
    ) -> list[tuple[Conversation, str]]:
        """Conversations by providerDialogId, each with its channel's Nexus channel id."""
        if not provider_dialog_ids:
            return []
        rows = await self.session.execute(
            select(Conversation, Channel.nexus_channel_id)
            .join(Channel, Channel.id == Conversation.channel_id)
            .where(among(self.session, Conversation.provider_dialog_id, provider_dialog_ids))
        )
        return [(conversation, nexus_channel_id) for conversation, nexus_channel_id in rows]

    async def routes_by_dialog(self, provider_dialog_ids: Collection[str]) -> list[Any]:
        """Conversations by providerDialogId as rows of `_ROUTE_COLUMNS` (its id, dialog id,
        customer and its channel's Nexus channel id): what routing an AXP event needs, without
        loading the ORM objects."""
        if not provider_dialog_ids:
            return []
        if is_postgres(self.session):
            return await fetch_text(
                self.session,
                _PG_ROUTES_BY_DIALOG,
                {"provider_dialog_ids": sorted(provider_dialog_ids)},
            )
        return list(
            await self.session.execute(
                select(
                    Conversation.id,
                    Conversation.provider_dialog_id,
                    Conversation.customer_address,
                    Channel.nexus_channel_id,
                )
                .join(Channel, Channel.id == Conversation.channel_id)
                .where(Conversation.provider_dialog_id.in_(list(provider_dialog_ids)))
            )
        )

    async def search(
        self,
        *,
        customer_address: str | None = None,
        nexus_channel_id: str | None = None,
        provider_dialog_id: str | None = None,
        limit: int = 50,
    ) -> list[tuple[Conversation, str]]:
        """Conversations matching all the given values, most recently active first, each with
        its channel's Nexus channel id."""
        query = select(Conversation, Channel.nexus_channel_id).join(
            Channel, Channel.id == Conversation.channel_id
        )
        if customer_address:
            query = query.where(Conversation.customer_address == customer_address)
        if nexus_channel_id:
            query = query.where(Channel.nexus_channel_id == nexus_channel_id)
        if provider_dialog_id:
            query = query.where(Conversation.provider_dialog_id == provider_dialog_id)
        rows = await self.session.execute(
            query.order_by(Conversation.last_activity_at.desc(), Conversation.id.desc()).limit(
                limit
            )
        )
        return [(conversation, nexus_channel_id) for conversation, nexus_channel_id in rows]

    async def record_activity(self, rows: Sequence[dict[str, Any]]) -> None:
        """After sends: AXP's engagement and dialog ids (when given), activity never backwards.

        Rows: `conversation_id`, `engagement_id`, `dialog_id`, `at`; written in id order
        (concurrent outcome batches then lock conversations in the same order).
        """
        if not rows:
            return
        # Activity never moves backwards: the latest moment.
        merged = _merged(rows, "conversation_id", ("engagement_id", "dialog_id"), max)
        await _update_many(self.session, _PG_RECORD_ACTIVITY, _RECORD_ACTIVITY, merged)


class MessageLinkRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(
        self,
        *,
        direction: str,
        conversation_id: int | None = None,
        ack_id: str | None = None,
        nexus_message_id: str | None = None,
        axp_message_id: str | None = None,
        delivery_id: int | None = None,
        status: str = "pending",
    ) -> MessageLink:
        link = MessageLink(
            direction=direction,
            conversation_id=conversation_id,
            ack_id=ack_id,
            nexus_message_id=nexus_message_id,
            axp_message_id=axp_message_id,
            delivery_id=delivery_id,
            status=status,
        )
        self.session.add(link)
        await self.session.flush()
        return link

    async def _first(self, *conditions: Any) -> MessageLink | None:
        return await self.session.scalar(
            select(MessageLink).where(*conditions).order_by(MessageLink.id.desc()).limit(1)
        )

    async def _latest_by(
        self, column: Any, values: Collection[str], *conditions: Any
    ) -> dict[str, MessageLink]:
        """The newest link for each value of `column` (as `_first` picks one)."""
        if not values:
            return {}
        rows = await self.session.scalars(
            select(MessageLink)
            .where(among(self.session, column, values), *conditions)
            .order_by(MessageLink.id)
        )
        return {getattr(link, column.key): link for link in rows}

    async def by_axp_message_id(self, axp_message_ids: Collection[str]) -> dict[str, MessageLink]:
        return await self._latest_by(MessageLink.axp_message_id, axp_message_ids)

    async def by_nexus_message_id(
        self, nexus_message_ids: Collection[str], *, direction: str
    ) -> dict[str, MessageLink]:
        return await self._latest_by(
            MessageLink.nexus_message_id, nexus_message_ids, MessageLink.direction == direction
        )

    async def by_ack_id(self, ack_ids: Collection[str]) -> dict[str, MessageLink]:
        return await self._latest_by(MessageLink.ack_id, ack_ids)

    async def find_by_ack_id(self, ack_id: str) -> MessageLink | None:
        return await self._first(MessageLink.ack_id == ack_id)

    async def find_by_nexus_message_id(
        self, nexus_message_id: str, *, direction: str | None = None
    ) -> MessageLink | None:
        conditions = [MessageLink.nexus_message_id == nexus_message_id]
        if direction is not None:
            conditions.append(MessageLink.direction == direction)
        return await self._first(*conditions)

    async def find_by_axp_message_id(self, axp_message_id: str) -> MessageLink | None:
        return await self._first(MessageLink.axp_message_id == axp_message_id)

    async def sent_nexus_message_ids(
        self, keys: Collection[tuple[int, str]], *, direction: str
    ) -> set[tuple[int, str]]:
        """Which (channel id, Nexus message id) pairs already have a link sent to AXP."""
        if not keys:
            return set()
        message_ids = sorted({message_id for _channel, message_id in keys})
        if is_postgres(self.session):
            # Once per accepted batch: on the driver, without the ORM's compile and result layers.
            rows = await fetch_text(
                self.session,
                _PG_SENT_NEXUS_MESSAGE_IDS,
                {"message_ids": message_ids, "direction": str(direction)},
            )
        else:
            rows = list(
                await self.session.execute(
                    select(Conversation.channel_id, MessageLink.nexus_message_id)
                    .join(Conversation, Conversation.id == MessageLink.conversation_id)
                    .where(
                        MessageLink.nexus_message_id.in_(message_ids),
                        MessageLink.direction == direction,
                        MessageLink.axp_message_id.is_not(None),
                    )
                )
            )
        return {(row.channel_id, row.nexus_message_id) for row in rows} & set(keys)

    async def list_for_conversation(self, conversation_id: int) -> list[MessageLink]:
        """The conversation's messages both ways, in the order the bridge took them in."""
        rows = await self.session.scalars(
            select(MessageLink)
            .where(MessageLink.conversation_id == conversation_id)
            .order_by(MessageLink.created_at, MessageLink.id)
        )
        return list(rows)

    async def find_by_delivery_id(self, delivery_id: int) -> MessageLink | None:
        return await self._first(MessageLink.delivery_id == delivery_id)

    async def insert_many(self, rows: Sequence[dict[str, Any]]) -> None:
        """New links (each row: every column but `id`), in one statement."""
        await insert_rows(self.session, link_table, rows)

    @staticmethod
    def pending_row(
        direction: str,
        *,
        conversation_id: int | None,
        ack_id: str | None = None,
        nexus_message_id: str | None = None,
        axp_message_id: str | None = None,
        now: datetime,
    ) -> dict[str, Any]:
        """A new link's columns but `id` and `delivery_id`: pending, no status reported yet."""
        return {
            "direction": direction,
            "conversation_id": conversation_id,
            "ack_id": ack_id,
            "nexus_message_id": nexus_message_id,
            "axp_message_id": axp_message_id,
            "status": "pending",
            "status_detail": None,
            "status_updated_at": None,
            "created_at": now,
        }

    @staticmethod
    def written_with_deliveries(rows: Sequence[dict[str, Any]]) -> RowsNamingDeliveries:
        """New links of new deliveries, to write in the delivery insert's statement.

        Each row: every column but `id` and `delivery_id`, and `DELIVERY_SEQUENCE` (its
        delivery's sequence).
        """
        return RowsNamingDeliveries(link_table, rows)

    async def linked_axp_message_ids(self, axp_message_ids: Collection[str]) -> set[str]:
        """Which of these AXP message ids already have a link (relayed or being relayed)."""
        if not axp_message_ids:
            return set()
        if is_postgres(self.session):
            # Once per accepted batch of AXP callbacks: on the driver, without the ORM layers.
            rows = await fetch_text(
                self.session, _PG_LINKED_AXP_MESSAGE_IDS, {"message_ids": list(axp_message_ids)}
            )
            return {row.axp_message_id for row in rows if row.axp_message_id}
        found = await self.session.scalars(
            select(MessageLink.axp_message_id).where(
                MessageLink.axp_message_id.in_(list(axp_message_ids))
            )
        )
        return {value for value in found if value}

    async def mark_sent_many(self, rows: Sequence[dict[str, Any]]) -> None:
        """After sends: each delivery's link gets the remote ids and status `sent`.

        Rows: `delivery_id`, `axp_message_id`, `nexus_message_id` (None keeps the stored
        value), `at`. The status only moves forward, as in `update_status`.
        """
        if not rows:
            return
        # The status moves to `sent` once, at the first row's moment.
        merged = _merged(rows, "delivery_id", ("axp_message_id", "nexus_message_id"), _first)
        await _update_many(self.session, _PG_MARK_SENT, _MARK_SENT, merged)

    async def update_status(
        self,
        link: MessageLink,
        status: str,
        *,
        detail: str | None = None,
        at: datetime | None = None,
    ) -> bool:
        """Move the link's status forward; a stale or repeated status changes nothing (False)."""
        if status not in _LINK_RANK:
            raise ValueError(f"unknown message status {status!r}; expected one of {LINK_STATUSES}")
        if _LINK_RANK[status] <= _LINK_RANK.get(link.status, 0):
            return False
        link.status = status
        link.status_detail = detail
        link.status_updated_at = at or utcnow()
        await self.session.flush()
        return True


@dataclass(frozen=True, slots=True)
class LatestAndSent:
    # `ConversationRepository.latest_for`'s answer.
    latest: dict[tuple[int, str], Any]
    # `MessageLinkRepository.sent_nexus_message_ids`'s answer.
    sent: set[tuple[int, str]]


async def latest_conversations_and_sent_messages(
    session: AsyncSession,
    conversation_keys: Collection[tuple[int, str]],
    message_keys: Collection[tuple[int, str]],
    *,
    direction: str,
) -> LatestAndSent:
    """`latest_for(conversation_keys)` and `sent_nexus_message_ids(message_keys)` at once.

    What an accepted batch of Nexus messages reads before its deliveries: on PostgreSQL one
    statement, so one round trip of the group commit's instead of two.
    """
    if not is_postgres(session) or not conversation_keys or not message_keys:
        return LatestAndSent(
            await ConversationRepository(session).latest_for(conversation_keys),
            await MessageLinkRepository(session).sent_nexus_message_ids(
                message_keys, direction=direction
            ),
        )
    rows = await fetch_text(
        session,
        _PG_LATEST_CONVERSATIONS_AND_SENT_MESSAGES,
        {
            "channel_ids": [channel_id for channel_id, _customer in conversation_keys],
            "customers": [customer for _channel_id, customer in conversation_keys],
            "message_ids": sorted({message_id for _channel_id, message_id in message_keys}),
            "direction": str(direction),
        },
    )
    latest = {(row.channel_id, row.customer_address): row for row in rows if row.id is not None}
    sent = {(row.channel_id, row.nexus_message_id) for row in rows if row.id is None}
    return LatestAndSent(latest, sent & set(message_keys))


@dataclass(frozen=True, slots=True)
class RoutesAndLinked:
    # `ConversationRepository.routes_by_dialog`'s rows.
    routes: list[Any]
    # `MessageLinkRepository.linked_axp_message_ids`'s answer.
    linked: set[str]


async def routes_and_linked_messages(
    session: AsyncSession, provider_dialog_ids: Collection[str], axp_message_ids: Collection[str]
) -> RoutesAndLinked:
    """`routes_by_dialog(provider_dialog_ids)` and `linked_axp_message_ids(axp_message_ids)`.

    What an accepted batch of AXP agent messages reads before its deliveries: on PostgreSQL
    one statement, one round trip of the group commit's instead of two.
    """
    if not is_postgres(session) or not provider_dialog_ids or not axp_message_ids:
        return RoutesAndLinked(
            await ConversationRepository(session).routes_by_dialog(provider_dialog_ids),
            await MessageLinkRepository(session).linked_axp_message_ids(axp_message_ids),
        )
    rows = await fetch_text(
        session,
        _PG_ROUTES_AND_LINKED_MESSAGES,
        {
            "provider_dialog_ids": sorted(provider_dialog_ids),
            "message_ids": sorted(axp_message_ids),
        },
    )
    return RoutesAndLinked(
        [row for row in rows if row.id is not None],
        {row.axp_message_id for row in rows if row.id is None and row.axp_message_id},
    )
