"""The outbox worker: lease due deliveries, call their destination outside any transaction,
record an attempt and the next state.

Claiming is one short transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL, `BEGIN IMMEDIATE`
on SQLite) that sets `locked_until`; the call happens after the commit; the outcome is a
second short transaction, applied only while this worker still holds the lease. A worker
that dies leaves rows `in_flight` with a lease that expires, after which any worker claims
them again: at-least-once, with the delivery id as the idempotency key.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.ops import metrics
from channel_bridge.ops.logging import get_logger, redact_text
from channel_bridge.relay.clock import Clock, SystemClock
from channel_bridge.relay.destinations import DeliveryContext, DestinationRegistry
from channel_bridge.relay.errors import AuthError, DeliveryError, ThrottledError
from channel_bridge.relay.repository import (
    NOTIFY_CHANNEL,
    ClaimedDelivery,
    DeliveryRepository,
    write_turn,
)
from channel_bridge.relay.retry import RetryPolicy, describe
from channel_bridge.settings import Settings

log = get_logger(__name__)

EXCERPT_MAX_CHARS = 2048
# How long stop() lets in-flight calls finish before cancelling them (their leases then expire).
SHUTDOWN_GRACE_S = 10.0
# How often a lost LISTEN connection is re-established; polling covers the gap.
LISTEN_RETRY_S = 30.0


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


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
    ) -> None:
        self._sessionmaker = sessionmaker
        self._registry = registry
        self._clock = clock or SystemClock()
        self.worker_id = worker_id or default_worker_id()
        self._policy = policy or RetryPolicy(settings)
        self._concurrency = max(1, settings.worker_concurrency)
        self._claim_batch = max(1, settings.worker_claim_batch)
        self._lease_s = settings.worker_lease_s
        # A call ends well before its lease, so a live worker always records its own outcome.
        self._call_timeout_s = settings.worker_lease_s * 0.8
        self._poll_s = settings.worker_poll_interval_s
        self._coalesce_s = max(0.0, settings.worker_claim_coalesce_ms) / 1000
        self._wake_event = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._outcomes: list[tuple[_Outcome, asyncio.Future[bool]]] = []
        self._recorder: asyncio.Task[None] | None = None
        self._listener: Any = None
        self._listen_attempted_at = float("-inf")

    @property
    def _is_postgres(self) -> bool:
        return self._engine_url().get_backend_name() == "postgresql"

    def _engine_url(self) -> Any:
        return self._sessionmaker.kw["bind"].url

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        if self._loop_task is not None:
            return
        await self._ensure_listener()
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
        if self._listener is not None:
            listener, self._listener = self._listener, None
            try:
                await listener.close(timeout=2)
            except Exception:
                listener.terminate()
        log.info("relay worker stopped", worker_id=self.worker_id)

    def wake(self) -> None:
        """Claim now (called when accept commits deliveries, or by a NOTIFY)."""
        self._wake_event.set()

    async def run_once(self) -> int:
        """Claim one round of due deliveries and deliver them; the number claimed."""
        claimed = await self._claim(min(self._concurrency, self._claim_batch))
        await asyncio.gather(*(self._deliver(item) for item in claimed))
        return len(claimed)

    async def _run(self) -> None:
        while True:
            self._wake_event.clear()
            if self._inflight and self._coalesce_s > 0:
                # Busy: let the completions of the next moment free their slots too, so one
                # claim serves several of them (a claim per finished delivery was a
                # transaction of four statements per delivery).
                await asyncio.sleep(self._coalesce_s)
                self._wake_event.clear()
            free = self._concurrency - len(self._inflight)
            if free > 0:
                wanted = min(free, self._claim_batch)
                try:
                    claimed = await self._claim(wanted)
                except Exception:
                    log.exception("claiming deliveries failed", worker_id=self.worker_id)
                    claimed = []
                for item in claimed:
                    task = asyncio.create_task(self._deliver(item))
                    self._inflight.add(task)
                    task.add_done_callback(self._on_delivery_done)
                if claimed and len(claimed) == wanted and free > wanted:
                    continue  # more may be due right now
            try:
                await asyncio.wait_for(self._wake_event.wait(), timeout=self._poll_s)
            except TimeoutError:
                await self._ensure_listener()

    def _on_delivery_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        # A free slot, and perhaps the next delivery of that partition is now unblocked.
        self._wake_event.set()

    # --- LISTEN/NOTIFY --------------------------------------------------------------

    async def _ensure_listener(self) -> None:
        if not self._is_postgres:
            return
        if self._listener is not None and not self._listener.is_closed():
            return
        now = time.monotonic()
        if now - self._listen_attempted_at < LISTEN_RETRY_S:
            return
        self._listen_attempted_at = now
        import asyncpg

        dsn = self._engine_url().set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            self._listener = await asyncpg.connect(dsn, timeout=5)
            await self._listener.add_listener(NOTIFY_CHANNEL, self._on_notify)
        except Exception as exc:
            log.warning("LISTEN failed; relying on polling", error=type(exc).__name__)
            self._listener = None

    def _on_notify(self, *_args: Any) -> None:
        self.wake()

    # --- claim, deliver, record -----------------------------------------------------

    async def _claim(self, limit: int) -> list[ClaimedDelivery]:
        destinations = self._registry.names()
        if not destinations or limit <= 0:
            return []
        now = self._clock.now()
        async with write_turn(self._sessionmaker), self._sessionmaker() as session, session.begin():
            if not self._is_postgres:
                # Take the write lock up front: the check and the lease are one atomic step.
                await session.execute(text("BEGIN IMMEDIATE"))
            return await DeliveryRepository(session).claim_due(
                destinations=destinations,
                limit=limit,
                now=now,
                lease_s=self._lease_s,
                worker_id=self.worker_id,
            )

    async def _deliver(self, item: ClaimedDelivery) -> None:
        handler = self._registry.get(item.destination)
        attempt_number = item.attempt_number
        auth_retried = False
        while True:
            context = DeliveryContext(
                delivery_id=item.id,
                destination=item.destination,
                payload=item.payload,
                partition_key=item.partition_key,
                attempt_number=attempt_number,
                inbox_event_id=item.inbox_event_id,
            )
            started_at = self._clock.now()
            started = time.perf_counter()
            error: BaseException | None = None
            result: dict[str, Any] | None = None
            try:
                if handler is None:
                    raise DeliveryError(f"no handler registered for {item.destination!r}")
                async with asyncio.timeout(self._call_timeout_s):
                    result = await handler(context)
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
            elapsed = time.perf_counter() - started
            metrics.delivery_attempt_seconds.labels(item.destination).observe(elapsed)
            attempt = {
                "delivery_id": item.id,
                "number": attempt_number,
                "worker_id": self.worker_id,
                "started_at": started_at,
                "duration_ms": round(elapsed * 1000, 3),
            }
            if error is None:
                await self._record(
                    item,
                    attempt,
                    outcome="delivered",
                    status="delivered",
                    result=result if isinstance(result, dict) else None,
                )
                metrics.relay_seconds.labels(item.destination).observe(
                    max(0.0, (self._clock.now() - item.created_at).total_seconds())
                )
                return
            if isinstance(error, AuthError) and not auth_retried:
                # The platform refreshed its credentials on the 401: one immediate retry.
                auth_retried = True
                await self._record(item, attempt, outcome="auth_retry", status=None, error=error)
                attempt_number += 1
                continue
            decision = self._policy.decide(error, attempt_number=attempt_number)
            if decision.outcome == "dead":
                log.warning(
                    "delivery dead",
                    destination=item.destination,
                    delivery_id=item.id,
                    attempts=attempt_number,
                    reason=decision.reason,
                )
                await self._record(
                    item,
                    attempt,
                    outcome="dead",
                    status="dead",
                    error=error,
                    last_error=decision.reason,
                )
            else:
                await self._record(
                    item,
                    attempt,
                    outcome="retry",
                    status="pending",
                    error=error,
                    last_error=decision.reason,
                    next_attempt_at=self._clock.now() + timedelta(seconds=decision.delay_s),
                )
            return

    async def _record(
        self,
        item: ClaimedDelivery,
        attempt: dict[str, Any],
        *,
        outcome: str,
        status: str | None,
        error: BaseException | None = None,
        result: dict[str, Any] | None = None,
        last_error: str | None = None,
        next_attempt_at: Any = None,
    ) -> None:
        now = self._clock.now()
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
        outcome_row = _Outcome(
            delivery_id=item.id,
            attempt=values,
            status=status,
            now=now,
            next_attempt_at=next_attempt_at,
            last_error=redact_text(last_error)[:EXCERPT_MAX_CHARS] if last_error else None,
            result=result,
        )
        if not await self._submit(outcome_row):
            log.warning(
                "lease lost before the outcome was recorded",
                delivery_id=item.id,
                outcome=outcome,
                worker_id=self.worker_id,
            )

    async def _submit(self, outcome: _Outcome) -> bool:
        """Queue an outcome for the next write; True once committed with the lease still held.

        Outcomes that arrive while a write is in progress go together in the next one
        (group commit), so a busy worker spends one transaction on many deliveries.
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._outcomes.append((outcome, future))
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._write_outcomes())
        return await asyncio.shield(future)

    async def _write_outcomes(self) -> None:
        while self._outcomes:
            batch, self._outcomes = self._outcomes, []
            kept: list[bool] = []
            try:
                async with (
                    write_turn(self._sessionmaker),
                    self._sessionmaker() as session,
                    session.begin(),
                ):
                    repository = DeliveryRepository(session)
                    await repository.add_attempts([outcome.attempt for outcome, _ in batch])
                    for outcome, _ in batch:
                        kept.append(await self._apply(repository, outcome))
            except Exception:
                # The leases expire and other attempts follow: at-least-once still holds.
                log.exception("recording delivery outcomes failed", size=len(batch))
                kept = [True] * len(batch)  # already logged; no lease-lost warning on top
            for (_, future), held in zip(batch, kept, strict=True):
                if not future.done():
                    future.set_result(held)

    async def _apply(self, repository: DeliveryRepository, outcome: _Outcome) -> bool:
        number = outcome.attempt["number"]
        if outcome.status is None:
            await repository.extend_attempt_count(
                delivery_id=outcome.delivery_id, worker_id=self.worker_id, attempt_number=number
            )
            return True
        return await repository.record_result(
            delivery_id=outcome.delivery_id,
            worker_id=self.worker_id,
            attempt_number=number,
            now=outcome.now,
            status=outcome.status,
            next_attempt_at=outcome.next_attempt_at,
            last_error=outcome.last_error,
            result=outcome.result,
        )


@dataclass(frozen=True, slots=True)
class _Outcome:
    """One attempt row and the delivery's next state, waiting to be written."""

    delivery_id: int
    attempt: dict[str, Any]
    status: str | None
    now: datetime
    next_attempt_at: datetime | None
    last_error: str | None
    result: dict[str, Any] | None
