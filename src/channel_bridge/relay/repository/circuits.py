"""The SQL of the circuits' shared state (relay/circuits.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from channel_bridge.db.bulk import (
    insert_rows,
    is_postgres,
)
from channel_bridge.relay.repository.tables import (
    circuit_table,
)


class CircuitRepository:
    """The circuits' shared state (relay/circuits.py), read at each claim, written with outcomes."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def ensure(self, keys: Sequence[str], *, now: datetime, probe_interval_s: float) -> None:
        """A closed row for each circuit that has none yet."""
        await insert_rows(
            self.session,
            circuit_table,
            [
                {
                    "key": key,
                    "state": "closed",
                    "consecutive_failures": 0,
                    "probe_interval_s": probe_interval_s,
                    "updated_at": now,
                }
                for key in sorted(keys)
            ],
            on_conflict_do_nothing=("key",),
        )

    async def load(self, keys: Sequence[str], *, for_update: bool = False) -> dict[str, Any]:
        """The rows of these circuits (locked in key order when `for_update`)."""
        if not keys:
            return {}
        query = (
            select(circuit_table)
            .where(circuit_table.c.key.in_(sorted(keys)))
            .order_by(circuit_table.c.key)
        )
        if for_update and is_postgres(self.session):
            query = query.with_for_update()
        return {row.key: row for row in await self.session.execute(query)}

    async def take_probe(
        self, key: str, *, now: datetime, next_probe_at: datetime, next_interval_s: float
    ) -> bool:
        """Take the open circuit's probe if it is due and nobody took it; True if taken."""
        c = circuit_table.c
        taken = await self.session.execute(
            update(circuit_table)
            .where(
                c.key == key,
                c.state == "open",
                or_(c.next_probe_at.is_(None), c.next_probe_at <= now),
            )
            .values(next_probe_at=next_probe_at, probe_interval_s=next_interval_s, updated_at=now)
            .returning(c.key)
        )
        return taken.first() is not None

    async def extend_pause(
        self, key: str, *, until: datetime, now: datetime, reason: str | None
    ) -> None:
        """Nothing to this upstream before `until` (a later pause already stored stands)."""
        c = circuit_table.c
        await self.session.execute(
            update(circuit_table)
            .where(c.key == key, or_(c.paused_until.is_(None), c.paused_until < until))
            .values(paused_until=until, last_error=reason, updated_at=now)
        )

    async def save(self, key: str, values: dict[str, Any]) -> None:
        await self.session.execute(
            update(circuit_table).where(circuit_table.c.key == key).values(**values)
        )

    async def all(self) -> list[Any]:
        return list(await self.session.execute(select(circuit_table).order_by(circuit_table.c.key)))
