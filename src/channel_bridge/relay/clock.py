"""The relay's "now": real in production, moved by hand in tests (no sleeping for retries)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from channel_bridge.db.base import utcnow


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock UTC."""

    def now(self) -> datetime:
        return utcnow()


class ManualClock:
    """A clock that only moves when told to; scheduling decisions become exact and instant."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or utcnow()
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = moment.astimezone(UTC)
