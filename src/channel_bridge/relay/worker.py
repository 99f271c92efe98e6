"""The outbox worker: lease due deliveries in batches, call their destinations outside any
transaction, and record the outcomes of many deliveries in one transaction.

A claim is one short transaction (one statement on PostgreSQL, `FOR UPDATE SKIP LOCKED`;
`BEGIN IMMEDIATE` on SQLite) that leases up to a batch of heads of line, at most one per
partition. The calls happen after its commit, each as its own task, up to
`worker_concurrency` at once. Each finished call queues its outcome: the attempt row, the
delivery's next state and the handler's bookkeeping writes. Queued outcomes are written
together (group commit), and only for deliveries whose lease this worker still holds, so a
worker that lost a lease never overwrites the new holder's outcome. A call's slot is free
as soon as its outcome is queued (the next calls need not wait for the commit); at most
`worker_concurrency` outcomes wait for their commit at a time, and a partition's next
delivery is claimable only once its predecessor's outcome is committed. A worker that dies
leaves rows `in_flight` with a lease that expires, after which any worker claims them again:
at-least-once, with the delivery id as the idempotency key.

While calls are in flight the worker claims again only once a quarter of its slots are free
(`worker_claim_low_water`) or `worker_claim_coalesce_ms` has passed since the first one
freed, so a busy worker spends one claim on many deliveries; an idle one claims at once.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.db.models import DeliveryStatus
from channel_bridge.db.notifications import DatabaseNotifications, notify
from channel_bridge.ops import metrics
from channel_bridge.ops.faults import FaultLog
from channel_bridge.ops.logging import get_logger, redact_text
from channel_bridge.relay.ack_priority import AckPriority
from channel_bridge.relay.circuits import (
    CLOSED,
    OPEN,
    Circuit,
    CircuitBreakers,
    CircuitView,
)
from channel_bridge.relay.clock import Clock, SystemClock
from channel_bridge.relay.destinations import (
    Delivered,
    DeliveryContext,
    Destination,
    DestinationRegistry,
    Write,
    as_delivered,
)
from channel_bridge.relay.envelope import DeliveryRequest
from channel_bridge.relay.errors import (
    AuthError,
    DeliveryError,
    RetryableError,
    ThrottledError,
)
from channel_bridge.relay.repository import (
    NOTIFY_CHANNEL,
    CircuitRepository,
    ClaimedDelivery,
    DeliveryRepository,
    OutcomeRow,
    delivery_row,
    make_pending_due,
    write_turn,
)
from channel_bridge.relay.retry import RetryPolicy, describe
from channel_bridge.settings import Settings

log = get_logger(__name__)

EXCERPT_MAX_CHARS = 2048
# How long stop() lets in-flight calls finish before cancelling them (their leases then expire).
SHUTDOWN_GRACE_S = 10.0
# Errors that say the database itself is unreachable: retrying outcome by outcome cannot help.
_CONNECTION_ERRORS = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    OSError,
    TimeoutError,
)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class _Outcome:
    """One attempt row, the delivery's next state and its writes, waiting to be committed."""

    row: OutcomeRow
    attempt: dict[str, Any]
    writes: Sequence[Write] = ()
    # What the attempt says about its upstream, for the circuit breaker.
    circuit_key: str | None = None
    circuit_event: CircuitEvent | None = None


@dataclass(frozen=True, slots=True)
class CircuitEvent:
    """`ok` (the upstream answered 2xx), `answered` (it answered, 4xx), `failure` (retryable),
    `probe_failed`, or `pause` for `pause_s` seconds."""

    kind: str
    pause_s: float = 0.0
    detail: str | None = None


class RelayWorker:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        registry: DestinationRegistry,
        settings: Settings,
        *,
        clock: Clock | None = None,
        worker_id: str | None = None,
        policy: RetryPolicy | None = None,
        notifications: DatabaseNotifications | None = None,
        ack_priority: AckPriority | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        # Set when the inbox runs in the same process: its acknowledgements come first.
        self._ack_priority = ack_priority
        self._last_claim_at = 0.0
        self._registry = registry
        self._clock = clock or SystemClock()
        self.worker_id = worker_id or default_worker_id()
        self._policy = policy or RetryPolicy(settings)
        self._concurrency = max(1, settings.worker_concurrency)
        self._claim_batch = max(1, settings.worker_claim_batch)
        low_water = settings.worker_claim_low_water or self._concurrency // 4
        self._claim_low_water = max(1, min(low_water, self._concurrency))
        self._lease_s = settings.worker_lease_s
        # A call ends well before its lease, so a live worker always records its own outcome.
        self._call_timeout_s = settings.worker_lease_s * 0.8
        self._poll_s = settings.worker_poll_interval_s
        self._coalesce_s = max(0.0, settings.worker_claim_coalesce_ms) / 1000
        self._wake_event = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._inflight: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._outcomes: list[tuple[_Outcome, asyncio.Future[bool]]] = []
        # Outcomes queued or being written: claims pause while there are this many.
        self._uncommitted = 0
        self._recorder: asyncio.Task[None] | None = None
        self._owns_notifications = notifications is None
        self._notifications = notifications or DatabaseNotifications(self._engine_url())
        self._claim_faults = FaultLog("claiming deliveries", logger=log, worker_id=self.worker_id)
        self._outcome_faults = FaultLog(
            "recording delivery outcomes", logger=log, worker_id=self.worker_id
        )
        self._failure_threshold = settings.circuit_failure_threshold
        self._probe_initial_s = settings.circuit_probe_initial_s
        self._probe_max_s = settings.circuit_probe_max_s
        self._pause_max_s = settings.circuit_pause_max_s
        self._throttled_min_s = settings.retry_throttled_min_s
        self._breakers: CircuitBreakers | None = None
        self._circuits_ensured = False

    @property
    def _is_postgres(self) -> bool:
        return bool(self._engine_url().get_backend_name() == "postgresql")

    def _engine_url(self) -> Any:
        return self._sessionmaker.kw["bind"].url

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        if self._loop_task is not None:
            return
        await self._notifications.subscribe(NOTIFY_CHANNEL, self.wake)
        await self._notifications.ensure_connected()
        self._loop_task = asyncio.create_task(self._run(), name=f"relay-worker:{self.worker_id}")
        log.info("relay worker started", worker_id=self.worker_id, concurrency=self._concurrency)

    async def stop(self) -> None:
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._inflight:
            _done, pending = await asyncio.wait(set(self._inflight), timeout=SHUTDOWN_GRACE_S)
            for straggler in pending:
                straggler.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._recorder is not None:
            await asyncio.gather(self._recorder, return_exceptions=True)
        if self._owns_notifications:
            await self._notifications.close()
        log.info("relay worker stopped", worker_id=self.worker_id)

    def wake(self) -> None:
        """Claim now (called when accept commits deliveries, or by a NOTIFY)."""
        self._wake_event.set()

    async def run_once(self) -> int:
        """Claim one round of due deliveries, deliver them and wait for their outcomes to be
        committed; the number claimed."""
        claimed = await self._claim(min(self._concurrency, self._claim_batch))
        recorded = await asyncio.gather(*(self._deliver(item) for item in claimed))
        await asyncio.gather(*recorded)
        return len(claimed)

    async def _run(self) -> None:
        while True:
            self._wake_event.clear()
            if self._inflight:
                await self._wait_for_free_slots()
            await self._wait_for_claim_turn()
            free = self._free_slots()
            if free > 0:
                wanted = min(free, self._claim_batch)
                self._last_claim_at = time.monotonic()
                claimed = await self._claim_logged(wanted)
                for item in claimed:
                    task = asyncio.create_task(self._deliver(item))
                    self._inflight.add(task)
                    task.add_done_callback(self._on_delivery_done)
                if claimed and len(claimed) == wanted and free > wanted:
                    continue  # more may be due right now
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation that
            # arrives as the event is set, and stop() then waits for a loop that never ends.
            try:
                async with asyncio.timeout(self._poll_s):
                    await self._wake_event.wait()
            except TimeoutError:
                await self._notifications.ensure_connected()

    async def _wait_for_claim_turn(self) -> None:
        """While acknowledgements come first, one claim per priority period.

        Claiming whenever a slot freed made each delivery at the floor cost a claim and an
        outcome transaction of its own (16 % of the serving process's samples for 5 % of the
        run's deliveries); one claim a period serves every slot freed in it.
        """
        if self._ack_priority is None or self._slot_limit() >= self._concurrency:
            return
        delay = self._last_claim_at + self._ack_priority.period_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def _free_slots(self) -> int:
        """Calls that may start now: free slots, unless commits are the ones falling behind."""
        if self._uncommitted >= self._concurrency:
            return 0
        return self._slot_limit() - len(self._inflight)

    def _slot_limit(self) -> int:
        """Every slot, unless acknowledgements in this process need the loop (AckPriority)."""
        if self._ack_priority is None:
            return self._concurrency
        return self._ack_priority.relay_slots(self._concurrency)

    async def _wait_for_free_slots(self) -> None:
        """Busy: until a quarter of the slots are free, or the coalesce window has passed."""
        deadline = time.monotonic() + self._coalesce_s
        # A quarter of the slots the worker has now: fewer while acknowledgements come first.
        low_water = min(self._claim_low_water, max(1, self._slot_limit() // 4))
        while self._free_slots() < low_water:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not (self._inflight or self._uncommitted):
                return
            self._slot_freed.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._slot_freed.wait()
            except TimeoutError:
                return

    def _on_delivery_done(self, task: asyncio.Task[Any]) -> None:
        self._inflight.discard(task)
        # A free slot, and perhaps the next delivery of that partition is now unblocked.
        self._slot_freed.set()
        self._wake_event.set()

    # --- claim, deliver, record -----------------------------------------------------

    async def _claim_logged(self, limit: int) -> list[ClaimedDelivery]:
        try:
            claimed = await self._claim(limit)
        except Exception as exc:
            # A database outage: one line when it starts, a count each minute, one at the end.
            self._claim_faults.failed(exc)
            return []
        self._claim_faults.succeeded()
        return claimed

    def _circuit_book(self) -> CircuitBreakers:
        """The circuits of the registered destinations (built once they are all registered)."""
        if self._breakers is None:
            circuits = {d.circuit.key: d.circuit for d in self._registry.all() if d.circuit}
            self._breakers = CircuitBreakers(circuits.values())
        return self._breakers

    def _destinations_of(self, key: str) -> list[str]:
        return [d.name for d in self._registry.all() if d.circuit and d.circuit.key == key]

    async def _claim(self, limit: int) -> list[ClaimedDelivery]:
        """One claim transaction: the circuits' state, their due probes, then the deliveries
        of every circuit that may send, each up to what its limits allow."""
        destinations = self._registry.all()
        if not destinations or limit <= 0:
            return []
        now = self._clock.now()
        breakers = self._circuit_book()
        async with write_turn(self._sessionmaker), self._sessionmaker() as session, session.begin():
            if not self._is_postgres:
                # Take the write lock up front: the check and the lease are one atomic step.
                await session.execute(text("BEGIN IMMEDIATE"))
            claimed: list[ClaimedDelivery] = []
            if breakers.circuits:
                await self._read_circuits(session, breakers, now)
                claimed += await self._claim_probes(session, breakers, now, limit)
            repository = DeliveryRepository(session)
            for names, wanted in self._claim_plan(breakers, now, limit - len(claimed)):
                wanted = min(wanted, limit - len(claimed))
                if wanted <= 0:
                    break
                claimed += await repository.claim_due(
                    destinations=names,
                    limit=wanted,
                    now=now,
                    lease_s=self._lease_s,
                    worker_id=self.worker_id,
                )
            return claimed

    async def _read_circuits(
        self, session: AsyncSession, breakers: CircuitBreakers, now: datetime
    ) -> None:
        repository = CircuitRepository(session)
        keys = list(breakers.circuits)
        if not self._circuits_ensured:
            await repository.ensure(keys, now=now, probe_interval_s=self._probe_initial_s)
            self._circuits_ensured = True
        rows = await repository.load(keys)
        breakers.refresh({key: _view(row) for key, row in rows.items()}, now=now)

    async def _claim_probes(
        self, session: AsyncSession, breakers: CircuitBreakers, now: datetime, limit: int
    ) -> list[ClaimedDelivery]:
        """Each open circuit whose probe is due and not taken by another worker: one delivery,
        the oldest head of the circuit's destinations, whatever its own retry time."""
        probes: list[ClaimedDelivery] = []
        circuits = CircuitRepository(session)
        for key in breakers.circuits:
            if len(probes) >= limit or not breakers.probe_due(key, now=now):
                continue
            view = breakers.views[key]
            taken = await circuits.take_probe(
                key,
                now=now,
                next_probe_at=now + timedelta(seconds=view.probe_interval_s),
                next_interval_s=min(self._probe_max_s, view.probe_interval_s * 2),
            )
            if not taken:
                continue
            found = await DeliveryRepository(session).claim_due(
                destinations=self._destinations_of(key),
                limit=1,
                now=now,
                lease_s=self._lease_s,
                worker_id=self.worker_id,
                due_before=datetime.max.replace(tzinfo=now.tzinfo),
            )
            probes += [replace(item, probe=True) for item in found]
            if found:
                log.info(
                    "circuit probe",
                    circuit=breakers.circuits[key].name,
                    delivery_id=found[0].id,
                    next_probe_in_s=view.probe_interval_s,
                )
        return probes

    def _claim_plan(
        self, breakers: CircuitBreakers, now: datetime, free: int
    ) -> list[tuple[list[str], int]]:
        """Which destinations to claim, and how many: one group per limited circuit, then the
        rest together (open and paused circuits are left out)."""
        unlimited: list[str] = []
        limited: list[tuple[list[str], int]] = []
        by_circuit: dict[str, list[str]] = {}
        for destination in self._registry.all():
            if destination.circuit is None:
                unlimited.append(destination.name)
            else:
                by_circuit.setdefault(destination.circuit.key, []).append(destination.name)
        for key, names in by_circuit.items():
            room = breakers.capacity(key, now=now, free=free)
            if room >= free:
                unlimited += names
            elif room > 0:
                limited.append((names, room))
        return [*limited, (unlimited, free)] if unlimited else limited

    async def _deliver(self, item: ClaimedDelivery) -> asyncio.Future[bool]:
        """Attempt one claimed delivery; the future of its final outcome's commit."""
        destination = self._registry.get(item.destination)
        attempt_number = item.attempt_number
        auth_retried = False
        payload: Any = None
        decode_error: DeliveryError | None = None
        if destination is None:
            decode_error = DeliveryError(f"no handler registered for {item.destination!r}")
        else:
            try:
                payload = destination.decode(item.payload)
            except DeliveryError as exc:
                decode_error = exc
        circuit = destination.circuit if destination is not None else None
        while True:
            started_at = self._clock.now()
            started = time.perf_counter()
            error: BaseException | None = decode_error
            delivered: Delivered | None = None
            if error is None and destination is not None:
                if circuit is not None:
                    self._circuit_book().started(circuit.key)
                context = DeliveryContext(
                    delivery_id=item.id,
                    destination=item.destination,
                    payload=payload,
                    partition_key=item.partition_key,
                    attempt_number=attempt_number,
                    inbox_event_id=item.inbox_event_id,
                )
                try:
                    async with asyncio.timeout(self._call_timeout_s):
                        delivered = as_delivered(await destination.handler(context))
                except TimeoutError:
                    error = ThrottledError(f"delivery timed out after {self._call_timeout_s:.0f} s")
                except Exception as exc:
                    error = exc
                    if not isinstance(exc, DeliveryError):
                        log.exception(
                            "destination raised an unclassified error",
                            destination=item.destination,
                            delivery_id=item.id,
                        )
                if circuit is not None:
                    self._circuit_book().finished(circuit.key, answered=_answered(delivered, error))
            elapsed = time.perf_counter() - started
            metrics.delivery_attempt_seconds.labels(item.destination).observe(elapsed)
            attempt = {
                "delivery_id": item.id,
                "number": attempt_number,
                "worker_id": self.worker_id,
                "started_at": started_at,
                "duration_ms": round(elapsed * 1000, 3),
            }
            if delivered is not None:
                metrics.relay_seconds.labels(item.destination).observe(
                    max(0.0, (self._clock.now() - item.created_at).total_seconds())
                )
                return self._record(
                    item,
                    attempt,
                    outcome="delivered",
                    status=DeliveryStatus.DELIVERED,
                    result=delivered.result,
                    writes=delivered.writes,
                    circuit=circuit,
                    circuit_event=CircuitEvent("ok"),
                )
            assert error is not None
            if isinstance(error, AuthError) and not auth_retried:
                # The platform refreshed its credentials on the 401: one immediate retry.
                auth_retried = True
                # Committed before the next attempt, whose outcome would otherwise share a
                # batch with it (two outcomes of one delivery in one statement).
                await self._record(item, attempt, outcome="auth_retry", status=None, error=error)
                attempt_number += 1
                continue
            if circuit is not None and isinstance(error, RetryableError):
                held = await self._held_by_circuit(item, attempt, error, circuit)
                if held is not None:
                    return held
            decision = self._policy.decide(error, attempt_number=attempt_number)
            event = (
                CircuitEvent("failure", detail=describe(error))
                if isinstance(error, RetryableError)
                else CircuitEvent("answered")
                if getattr(error, "http_status", None)
                else None
            )
            if decision.outcome == "dead":
                log.warning(
                    "delivery dead",
                    destination=item.destination,
                    delivery_id=item.id,
                    attempts=attempt_number,
                    reason=decision.reason,
                )
                return self._record(
                    item,
                    attempt,
                    outcome="dead",
                    status=DeliveryStatus.DEAD,
                    error=error,
                    last_error=decision.reason,
                    writes=_dead_letter_follow_ups(destination, payload, item, self._clock.now()),
                    circuit=circuit,
                    circuit_event=event,
                )
            log.warning(
                "delivery attempt failed; retrying",
                destination=item.destination,
                delivery_id=item.id,
                attempt=attempt_number,
                retry_in_s=round(decision.delay_s, 1),
                reason=decision.reason,
            )
            return self._record(
                item,
                attempt,
                outcome="retry",
                status=DeliveryStatus.PENDING,
                error=error,
                last_error=decision.reason,
                next_attempt_at=self._clock.now() + timedelta(seconds=decision.delay_s),
                circuit=circuit,
                circuit_event=event,
            )

    async def _held_by_circuit(
        self,
        item: ClaimedDelivery,
        attempt: dict[str, Any],
        error: RetryableError,
        circuit: Circuit,
    ) -> asyncio.Future[bool] | None:
        """A throttle (429, Retry-After) pauses the whole circuit, a failed probe keeps it
        open: either way the delivery waits without spending its retry budget. None when the
        failure is an ordinary one, scheduled by the retry policy."""
        now = self._clock.now()
        if _is_throttle(error):
            pause_s = min(
                self._pause_max_s,
                error.retry_after_s if error.retry_after_s is not None else self._throttled_min_s,
            )
            until = now + timedelta(seconds=pause_s)
            # Now, not with the outcome's group commit: the other workers read the shared
            # state at their next claim, and every moment before it is stored they may send.
            self._circuit_book().pause(circuit.key, until)
            await self._store_pause(circuit.key, until, describe(error))
            return self._record(
                item,
                attempt,
                outcome="throttled",
                status=DeliveryStatus.PENDING,
                error=error,
                last_error=f"paused {pause_s:g} s: {describe(error)}",
                next_attempt_at=now + timedelta(seconds=pause_s),
                counted=False,
                circuit=circuit,
                circuit_event=CircuitEvent("pause", pause_s=pause_s, detail=describe(error)),
            )
        if item.probe:
            return self._record(
                item,
                attempt,
                outcome="probe",
                status=DeliveryStatus.PENDING,
                error=error,
                last_error=f"circuit open, probe failed: {describe(error)}",
                counted=False,
                circuit=circuit,
                circuit_event=CircuitEvent("probe_failed", detail=describe(error)),
            )
        return None

    async def _store_pause(self, key: str, until: datetime, reason: str) -> None:
        try:
            async with (
                write_turn(self._sessionmaker),
                self._sessionmaker() as session,
                session.begin(),
            ):
                await CircuitRepository(session).extend_pause(
                    key, until=until, now=self._clock.now(), reason=reason
                )
        except Exception:  # the outcome transaction stores it again
            log.warning("storing a circuit pause failed; it follows with the outcome", key=key)

    def _record(
        self,
        item: ClaimedDelivery,
        attempt: dict[str, Any],
        *,
        outcome: str,
        status: str | None,
        error: BaseException | None = None,
        result: dict[str, Any] | None = None,
        writes: Sequence[Write] = (),
        last_error: str | None = None,
        next_attempt_at: Any = None,
        counted: bool = True,
        circuit: Circuit | None = None,
        circuit_event: CircuitEvent | None = None,
    ) -> asyncio.Future[bool]:
        excerpt = getattr(error, "response_excerpt", None)
        values = {
            **attempt,
            "outcome": outcome,
            "http_status": getattr(error, "http_status", None),
            "error_class": (
                error.error_class
                if isinstance(error, DeliveryError)
                else type(error).__name__[:32]
                if error
                else None
            ),
            "error": redact_text(describe(error))[:EXCERPT_MAX_CHARS] if error else None,
            "response_excerpt": redact_text(str(excerpt))[:EXCERPT_MAX_CHARS] if excerpt else None,
        }
        metrics.deliveries.labels(item.destination, outcome).inc()
        row = OutcomeRow(
            delivery_id=item.id,
            attempt_number=attempt["number"],
            status=status,
            now=self._clock.now(),
            next_attempt_at=next_attempt_at,
            last_error=redact_text(last_error)[:EXCERPT_MAX_CHARS] if last_error else None,
            result=result,
            counted=counted,
        )
        future = self._submit(
            _Outcome(
                row,
                values,
                writes,
                circuit_key=circuit.key if circuit is not None else None,
                circuit_event=circuit_event,
            )
        )

        def recorded(done: asyncio.Future[bool]) -> None:
            self._uncommitted -= 1
            self._slot_freed.set()
            self._wake_event.set()  # the partition's next delivery may be claimable now
            if not done.cancelled() and not done.result():
                log.warning(
                    "lease lost before the outcome was recorded",
                    delivery_id=item.id,
                    outcome=outcome,
                    worker_id=self.worker_id,
                )

        future.add_done_callback(recorded)
        return future

    def _submit(self, outcome: _Outcome) -> asyncio.Future[bool]:
        """Queue an outcome for the next write; the future is True once committed with the
        lease still held.

        Outcomes that arrive while a write is in progress go together in the next one
        (group commit), so a busy worker spends one transaction on many deliveries.
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._outcomes.append((outcome, future))
        self._uncommitted += 1
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._write_outcomes())
        return future

    async def _write_outcomes(self) -> None:
        while self._outcomes:
            batch, self._outcomes = self._outcomes, []
            outcomes = [outcome for outcome, _ in batch]
            try:
                held = await self._commit_outcomes(outcomes)
                self._outcome_faults.succeeded()
            except _CONNECTION_ERRORS as exc:
                # The leases expire and other attempts follow: at-least-once still holds.
                self._outcome_faults.failed(exc)
                held = None
            except Exception:
                # A statement failed (a bookkeeping write, most likely): one outcome per
                # transaction, so only the outcome at fault is affected.
                log.exception("recording a batch of outcomes failed; retrying one by one")
                held = await self._commit_one_by_one(outcomes)
            for outcome, future in batch:
                if not future.done():
                    # An outcome lost to a database failure was already logged above: no
                    # lease-lost warning on top.
                    future.set_result(held is None or outcome.row.delivery_id in held)

    async def _commit_outcomes(self, outcomes: Sequence[_Outcome]) -> set[int]:
        """Attempts, next states and writes in one transaction; the ids whose lease was held."""
        async with write_turn(self._sessionmaker), self._sessionmaker() as session, session.begin():
            repository = DeliveryRepository(session)
            held = await repository.record_outcomes(
                [outcome.row for outcome in outcomes], worker_id=self.worker_id
            )
            # Every attempt happened and is recorded; only held leases get their bookkeeping.
            await repository.add_attempts([outcome.attempt for outcome in outcomes])
            kept = [outcome for outcome in outcomes if outcome.row.delivery_id in held]
            await _apply_writes(session, [write for outcome in kept for write in outcome.writes])
            # Every outcome is evidence about its upstream, held lease or not.
            await self._apply_circuit_events(session, outcomes)
        return held

    async def _apply_circuit_events(
        self, session: AsyncSession, outcomes: Sequence[_Outcome]
    ) -> None:
        """Count failures, open, pause and close circuits, in the outcome transaction."""
        events: dict[str, list[CircuitEvent]] = {}
        for outcome in outcomes:
            if outcome.circuit_key is not None and outcome.circuit_event is not None:
                events.setdefault(outcome.circuit_key, []).append(outcome.circuit_event)
        breakers = self._circuit_book()
        now = self._clock.now()
        # The steady state: successes on a quiet circuit change nothing; no statement.
        changing = sorted(
            key
            for key, found in events.items()
            if key in breakers.views
            and not (breakers.views[key].quiet(now) and all(e.kind == "ok" for e in found))
        )
        if not changing:
            return
        repository = CircuitRepository(session)
        rows = await repository.load(changing, for_update=True)
        for key in changing:
            row = rows.get(key)
            if row is None:
                continue
            before = _view(row)
            after = self._apply_events(before, events[key], now=now)
            last_error = next((e.detail for e in reversed(events[key]) if e.detail), row.last_error)
            await repository.save(
                key,
                {
                    "state": after.state,
                    "consecutive_failures": after.consecutive_failures,
                    "opened_at": now
                    if after.state == OPEN and before.state != OPEN
                    else None
                    if after.state != OPEN
                    else row.opened_at,
                    "next_probe_at": after.next_probe_at,
                    "probe_interval_s": after.probe_interval_s,
                    "paused_until": after.paused_until,
                    "last_error": last_error,
                    "updated_at": now,
                },
            )
            breakers.views[key] = after
            self._log_transition(breakers.circuits[key], before, after, last_error, now)
            if before.state == OPEN and after.state == CLOSED:
                # Back: every waiting delivery of the circuit is due at once, in order.
                await make_pending_due(session, destinations=self._destinations_of(key), now=now)
                await notify(await session.connection(), NOTIFY_CHANNEL)

    def _apply_events(
        self, view: CircuitView, events: Sequence[CircuitEvent], *, now: datetime
    ) -> CircuitView:
        state, failures = view.state, view.consecutive_failures
        next_probe_at, interval, paused_until = (
            view.next_probe_at,
            view.probe_interval_s,
            view.paused_until,
        )
        for event in events:
            if event.kind in ("ok", "answered"):
                # The upstream answered: it is up (a 4xx is our request's fault).
                failures = 0
                if state == OPEN:
                    state, next_probe_at, interval = CLOSED, None, self._probe_initial_s
            elif event.kind in ("failure", "probe_failed"):
                failures += 1
                if state == CLOSED and failures >= self._failure_threshold:
                    state = OPEN
                    next_probe_at = now + timedelta(seconds=self._probe_initial_s)
                    interval = min(self._probe_max_s, self._probe_initial_s * 2)
            elif event.kind == "pause":
                until = now + timedelta(seconds=event.pause_s)
                paused_until = until if paused_until is None else max(paused_until, until)
        return CircuitView(
            state=state,
            consecutive_failures=failures,
            next_probe_at=next_probe_at,
            probe_interval_s=interval,
            paused_until=paused_until,
        )

    def _log_transition(
        self,
        circuit: Circuit,
        before: CircuitView,
        after: CircuitView,
        reason: str | None,
        now: datetime,
    ) -> None:
        if before.state != OPEN and after.state == OPEN:
            log.warning(
                "circuit opened: its deliveries wait, one probe at a time",
                circuit=circuit.name,
                failures=after.consecutive_failures,
                reason=reason,
            )
        elif before.state == OPEN and after.state == CLOSED:
            log.info("circuit closed: its deliveries resume", circuit=circuit.name)
        if after.paused_until is not None and after.paused_until != before.paused_until:
            log.warning(
                "circuit paused",
                circuit=circuit.name,
                seconds=round((after.paused_until - now).total_seconds(), 1),
                reason=reason,
            )

    async def _commit_one_by_one(self, outcomes: Sequence[_Outcome]) -> set[int] | None:
        held: set[int] = set()
        for outcome in outcomes:
            try:
                held |= await self._commit_outcomes([outcome])
            except _CONNECTION_ERRORS as exc:
                self._outcome_faults.failed(exc)
                return None
            except Exception:
                log.exception(
                    "bookkeeping for a delivery could not be written; recording its outcome "
                    "without it",
                    delivery_id=outcome.row.delivery_id,
                    writes=[write.writer.name for write in outcome.writes],
                )
                try:
                    held |= await self._commit_outcomes([_Outcome(outcome.row, outcome.attempt)])
                except Exception:
                    log.exception("recording delivery outcomes failed", size=1)
                    return None
        return held


def _answered(delivered: Delivered | None, error: BaseException | None) -> bool | None:
    """For the circuit's in-process caution: True when the upstream answered (2xx, a 4xx, a
    throttle), False for a retryable failure, None when no call was made."""
    if delivered is not None:
        return True
    if isinstance(error, RetryableError):
        return _is_throttle(error)
    return True if getattr(error, "http_status", None) else None


def _is_throttle(error: RetryableError) -> bool:
    return error.http_status == 429 or error.retry_after_s is not None


def _view(row: Any) -> CircuitView:
    return CircuitView(
        state=row.state,
        consecutive_failures=row.consecutive_failures,
        next_probe_at=row.next_probe_at,
        probe_interval_s=row.probe_interval_s,
        paused_until=row.paused_until,
    )


@dataclass(frozen=True, slots=True)
class _FollowUp:
    inbox_event_id: int | None
    request: DeliveryRequest
    due_at: datetime


class _FollowUpDeliveries:
    """Inserts the deliveries a dead letter's hook asked for, with the dead outcome."""

    name = "relay.follow_up_deliveries"

    async def write(self, session: AsyncSession, rows: Sequence[_FollowUp]) -> None:
        await DeliveryRepository(session).insert_rows(
            [delivery_row(row.inbox_event_id, row.request, now=row.due_at) for row in rows]
        )


FOLLOW_UP_DELIVERIES = _FollowUpDeliveries()


def _dead_letter_follow_ups(
    destination: Destination | None, payload: Any, item: ClaimedDelivery, now: datetime
) -> list[Write]:
    """The deliveries the destination's dead-letter hook leaves behind, as writes."""
    if destination is None or destination.on_dead is None or payload is None:
        return []
    try:
        requests = destination.on_dead(payload)
    except Exception:
        log.exception("dead-letter hook failed", destination=item.destination, delivery_id=item.id)
        return []
    if requests:
        log.info(
            "dead delivery leaves follow-ups",
            delivery_id=item.id,
            follow_ups=[request.destination for request in requests],
        )
    return [
        Write(FOLLOW_UP_DELIVERIES, _FollowUp(item.inbox_event_id, request, now))
        for request in requests
    ]


async def _apply_writes(session: AsyncSession, writes: Sequence[Write]) -> None:
    """Each writer once, with all its rows, in writer-name order."""
    by_writer: dict[str, tuple[Any, list[Any]]] = {}
    for write in writes:
        by_writer.setdefault(write.writer.name, (write.writer, []))[1].append(write.row)
    for name in sorted(by_writer):
        writer, rows = by_writer[name]
        await writer.write(session, rows)
