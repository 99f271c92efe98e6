"""Background housekeeping: retention of finished rows, the outbox gauges, planner statistics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.db.models import DeliveryStatus
from channel_bridge.db.statistics import analyze_stale_tables
from channel_bridge.ops import metrics
from channel_bridge.ops.faults import FaultLog
from channel_bridge.ops.logging import get_logger
from channel_bridge.relay.clock import Clock, SystemClock
from channel_bridge.relay.repository import DeliveryRepository, InboxRepository
from channel_bridge.settings import Settings

log = get_logger(__name__)

# Gauges are scraped every 15-60 s; refreshing more often only costs queries.
GAUGE_REFRESH_S = 15.0


@dataclass(frozen=True, slots=True)
class PurgeCounts:
    deliveries: int
    # Events whose bodies were stripped (they stay as dedupe tombstones).
    inbox_events: int
    tombstones: int = 0


async def purge_expired(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    clock: Clock | None = None,
) -> PurgeCounts:
    """Delete finished deliveries (with attempts), strip handled inbox events past their
    retention down to tombstones, and delete tombstones past theirs."""
    now = (clock or SystemClock()).now()
    tombstone_days = max(settings.retention_tombstone_days, settings.retention_inbox_days)
    async with sessionmaker() as session, session.begin():
        deliveries = await DeliveryRepository(session).purge_finished(
            before=now - timedelta(days=settings.retention_attempts_days)
        )
        inbox = InboxRepository(session)
        tombstones = await inbox.purge_tombstones(before=now - timedelta(days=tombstone_days))
        events = await inbox.purge_handled(
            before=now - timedelta(days=settings.retention_inbox_days)
        )
    return PurgeCounts(deliveries=deliveries, inbox_events=events, tombstones=tombstones)


async def refresh_gauges(
    sessionmaker: async_sessionmaker[AsyncSession], *, clock: Clock | None = None
) -> None:
    """Set bridge_outbox_depth, bridge_outbox_oldest_due_seconds and bridge_dead_letters."""
    now = (clock or SystemClock()).now()
    async with sessionmaker() as session:
        repository = DeliveryRepository(session)
        counts = await repository.counts_by_status()
        oldest = await repository.oldest_due(now=now)
    for status in DeliveryStatus:
        metrics.outbox_depth.labels(status).set(counts.get(status, 0))
    metrics.outbox_oldest_due_seconds.set(
        max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
    )
    metrics.dead_letters.set(counts.get(DeliveryStatus.DEAD, 0))


class Housekeeping:
    """Runs retention, gauge refresh and statistics upkeep on their intervals until stopped."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(
                self._every(self._settings.retention_interval_s, self._purge),
                name="relay-retention",
            ),
            asyncio.create_task(self._every(GAUGE_REFRESH_S, self._gauges), name="relay-gauges"),
        ]
        if self._settings.db_analyze_interval_s > 0:
            self._tasks.append(
                asyncio.create_task(
                    self._every(self._settings.db_analyze_interval_s, self._statistics),
                    name="db-statistics",
                )
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _purge(self) -> None:
        counts = await purge_expired(self._sessionmaker, self._settings)
        if counts.deliveries or counts.inbox_events or counts.tombstones:
            log.info(
                "retention purged rows",
                deliveries=counts.deliveries,
                inbox_events=counts.inbox_events,
                tombstones=counts.tombstones,
            )

    async def _gauges(self) -> None:
        await refresh_gauges(self._sessionmaker)

    async def _statistics(self) -> None:
        analyzed = await analyze_stale_tables(
            self._sessionmaker, min_changes=self._settings.db_analyze_min_changes
        )
        if analyzed:
            log.info("planner statistics refreshed", tables=analyzed)

    @staticmethod
    async def _every(interval_s: float, job: Callable[[], Awaitable[None]]) -> None:
        name = getattr(job, "__name__", "job").lstrip("_")
        faults = FaultLog("housekeeping job", logger=log, job=name)
        while True:
            try:
                await job()
            except Exception as exc:  # the database, most likely: logged once, then counted
                faults.failed(exc)
            else:
                faults.succeeded()
            await asyncio.sleep(interval_s)
