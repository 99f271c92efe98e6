"""The durable inbox: store an inbound event and its deliveries in one transaction, once.

Concurrent `accept` calls are gathered into one transaction (group commit): the first call
opens a short window (`inbox_group_commit_window_ms`), every call arriving in it joins the
batch, and the batch is written with multi-row inserts (`ON CONFLICT DO NOTHING RETURNING`
tells which events are new). Each caller is released only after that commit. If the batch
fails, its items are retried one transaction each, so a bad item fails only its own caller.

Work that a kind of event needs in the same transaction (the bridge opens the conversation a
message belongs to, so its deliveries carry the conversation's ids) is an `AcceptStep`: it
runs once per batch for all the new events that name it, before the delivery insert, and the
rows it writes with the deliveries (their message links) go in the delivery insert's own
statement.

`on_acked(total_s, count)` hears, per committed batch, how long its calls waited in all (from
`accept` to the commit): the relay's ack priority reads it (relay/ack_priority.py).

At most `max_inflight` batches are written at once. Calls that arrive while they are busy
wait for the next batch, which starts as soon as one finishes: under load the batches grow
with the load instead of the transactions (and pooled connections) multiplying.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.ops.logging import get_logger
from channel_bridge.relay.clock import Clock, SystemClock
from channel_bridge.relay.envelope import Acceptance, AcceptedEvent, AcceptStep, DeliveryRequest
from channel_bridge.relay.repository import (
    DeliveryRepository,
    InboxBatchWriter,
    InboxRepository,
    delivery_row,
    write_turn,
)

log = get_logger(__name__)

# Extra work done in the accept transaction, only for a new event (e.g. upsert a mapping).
# It may return more deliveries to queue with the event. Such an event gets a transaction of
# its own; work that can be done for many events at once is an `AcceptStep` instead.
WithinAccept = Callable[[AsyncSession, int], Awaitable[Sequence[DeliveryRequest] | None]]


@dataclass(slots=True)
class _Pending:
    source: str
    external_id: str
    payload: dict[str, Any] | None
    deliveries: list[DeliveryRequest]
    ack: dict[str, Any] | None
    kind: str | None
    raw_body: str | None
    future: asyncio.Future[Acceptance] = field(repr=False)
    step: AcceptStep | None = None
    step_context: Any = None
    queued_at: float = 0.0

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.external_id)


class Inbox:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        on_accepted: Callable[[], None] | None = None,
        on_acked: Callable[[float, int], None] | None = None,
        window_ms: float = 1.5,
        max_batch: int = 256,
        max_inflight: int = 2,
        clock: Clock | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._on_accepted = on_accepted
        self._on_acked = on_acked
        self._window_s = max(0.0, window_ms) / 1000
        self._max_batch = max(1, max_batch)
        self._max_inflight = max(1, max_inflight)
        self._clock = clock or SystemClock()
        self._queue: list[_Pending] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    async def accept(
        self,
        *,
        source: str,
        external_id: str,
        payload: dict[str, Any] | None,
        deliveries: Sequence[DeliveryRequest] = (),
        ack: dict[str, Any] | None = None,
        kind: str | None = None,
        raw_body: str | None = None,
        within: WithinAccept | None = None,
        step: AcceptStep | None = None,
        step_context: Any = None,
    ) -> Acceptance:
        """Commit the event and, if it is new, its deliveries; then return the stored answer."""
        loop = asyncio.get_running_loop()
        item = _Pending(
            source,
            external_id,
            payload,
            list(deliveries),
            ack,
            kind,
            raw_body,
            loop.create_future(),
            step,
            step_context,
            time.monotonic(),
        )
        if within is not None:
            # Arbitrary work in the transaction cannot share a batch: it gets its own.
            return await self._accept_alone(item, within=within)
        self._queue.append(item)
        if len(self._flushes) < self._max_inflight:
            if len(self._queue) >= self._max_batch:
                self._flush_now()
            elif self._timer is None:
                self._timer = loop.call_later(self._window_s, self._flush_now)
        # Otherwise the next batch starts when a write in progress finishes (_on_flushed).
        # shield: a caller that goes away must not cancel the batch's other callers.
        return await asyncio.shield(item.future)

    async def drain(self) -> None:
        """Write what is queued and wait for batches in progress (shutdown)."""
        while self._queue or self._flushes:
            self._flush_now()
            if self._flushes:
                await asyncio.gather(*list(self._flushes), return_exceptions=True)

    # --- batching -------------------------------------------------------------------

    def _flush_now(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._queue or len(self._flushes) >= self._max_inflight:
            return
        batch = self._queue[: self._max_batch]
        del self._queue[: self._max_batch]
        task = asyncio.get_running_loop().create_task(self._flush(batch))
        self._flushes.add(task)
        task.add_done_callback(self._on_flushed)

    def _on_flushed(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        if self._queue:
            # These calls already waited for a free slot: no window on top.
            self._flush_now()

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            answers, created = await self._write_batch(batch)
        except Exception as exc:
            log.warning(
                "inbox batch failed; retrying its items one by one",
                size=len(batch),
                error=type(exc).__name__,
            )
            for item in batch:
                try:
                    _resolve(item, await self._accept_alone(item))
                except Exception as item_exc:  # only this caller fails
                    if not item.future.done():
                        item.future.set_exception(item_exc)
            return
        except BaseException as exc:  # cancelled at shutdown: release the callers
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(
                        exc if isinstance(exc, Exception) else RuntimeError("inbox stopped")
                    )
            raise
        if created:
            self._notify_local()
        if self._on_acked is not None:
            now = time.monotonic()
            self._on_acked(sum(now - item.queued_at for item in batch), len(batch))
        for item, answer in zip(batch, answers, strict=True):
            _resolve(item, answer)

    async def _write_batch(self, batch: list[_Pending]) -> tuple[list[Acceptance], bool]:
        now = self._clock.now()
        first_by_key: dict[tuple[str, str], _Pending] = {}
        for item in batch:
            first_by_key.setdefault(item.key, item)
        async with write_turn(self._sessionmaker), self._sessionmaker() as session, session.begin():
            writer = InboxBatchWriter(await session.connection())
            # In key order, so two batches holding the same keys never wait on each other in
            # a cycle (a duplicate storm puts copies of one webhook in concurrent batches).
            new_ids = await writer.insert_events(
                [
                    {
                        "source": item.source,
                        "external_id": item.external_id,
                        "kind": item.kind,
                        "payload": item.payload,
                        "raw_body": item.raw_body,
                        "ack": item.ack,
                        "received_at": now,
                    }
                    for _key, item in sorted(first_by_key.items())
                ]
            )
            existing = await writer.existing_events(k for k in first_by_key if k not in new_ids)
            accepted = {key: _accepted(new_ids[key], first_by_key[key]) for key in sorted(new_ids)}
            delivery_ids = await _insert_with_steps(
                session,
                [(first_by_key[key].step, event) for key, event in accepted.items()],
                now=now,
            )
        answers = []
        first_answered: set[tuple[str, str]] = set()
        for item in batch:
            key = item.key
            if key in new_ids and key not in first_answered:
                first_answered.add(key)
                answers.append(
                    Acceptance(
                        is_new=True,
                        inbox_event_id=new_ids[key],
                        ack=item.ack,
                        delivery_ids=accepted[key].delivery_ids,
                    )
                )
            elif key in new_ids:
                # A duplicate inside the same batch: the first call's answer.
                answers.append(
                    Acceptance(is_new=False, inbox_event_id=new_ids[key], ack=first_by_key[key].ack)
                )
            else:
                event_id, stored_ack = existing[key]
                answers.append(Acceptance(is_new=False, inbox_event_id=event_id, ack=stored_ack))
        return answers, delivery_ids > 0

    async def _accept_alone(
        self, item: _Pending, *, within: WithinAccept | None = None
    ) -> Acceptance:
        """One item, one transaction (the `within` path and the batch fallback)."""
        now = self._clock.now()
        async with write_turn(self._sessionmaker), self._sessionmaker() as session, session.begin():
            inbox = InboxRepository(session)
            event_id = await inbox.insert_if_new(
                source=item.source,
                external_id=item.external_id,
                payload=item.payload,
                ack=item.ack,
                kind=item.kind,
                raw_body=item.raw_body,
                now=now,
            )
            if event_id is None:
                existing_id, stored_ack = await inbox.get_by_key(item.source, item.external_id)
                return Acceptance(is_new=False, inbox_event_id=existing_id, ack=stored_ack)
            event = _accepted(event_id, item)
            if within is not None:
                event.deliveries += list(await within(session, event_id) or ())
            created = await _insert_with_steps(session, [(item.step, event)], now=now)
        if created:
            self._notify_local()
        return Acceptance(
            is_new=True, inbox_event_id=event_id, ack=item.ack, delivery_ids=event.delivery_ids
        )

    def _notify_local(self) -> None:
        if self._on_accepted is not None:
            try:
                self._on_accepted()
            except Exception:  # a wake-up hook must never fail an accepted event
                log.exception("on_accepted hook failed")


def _accepted(inbox_event_id: int, item: _Pending) -> AcceptedEvent:
    return AcceptedEvent(inbox_event_id, item.step_context, list(item.deliveries))


async def _insert_with_steps(
    session: AsyncSession,
    events: Sequence[tuple[AcceptStep | None, AcceptedEvent]],
    *,
    now: datetime,
) -> int:
    """Run the steps around the delivery insert, which writes the rows they name it in; the
    number of deliveries inserted."""
    by_step: dict[str, tuple[AcceptStep, list[AcceptedEvent]]] = {}
    for step, event in events:
        if step is not None:
            by_step.setdefault(step.name, (step, []))[1].append(event)
    steps = [by_step[name] for name in sorted(by_step)]
    for step, stepped in steps:
        await step.before_deliveries(session, stepped)
    rows_by_event = []
    for _step, event in events:
        rows = [
            delivery_row(event.inbox_event_id, request, now=now) for request in event.deliveries
        ]
        event.delivery_sequences = [row["sequence"] for row in rows]
        rows_by_event.append((event, rows))
    all_rows = [row for _event, rows in rows_by_event for row in rows]
    naming = [rows for step, stepped in steps for rows in step.rows_naming_deliveries(stepped)]
    ids_by_sequence = await DeliveryRepository(session).insert_rows(all_rows, naming)
    for event, rows in rows_by_event:
        event.delivery_ids = [ids_by_sequence[row["sequence"]] for row in rows]
    for step, stepped in steps:
        await step.after_deliveries(session, stepped)
    return len(all_rows)


def _resolve(item: _Pending, answer: Acceptance) -> None:
    if not item.future.done():
        item.future.set_result(answer)
