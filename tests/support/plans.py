"""What the plan tests share: the statements the bulk helpers hand to asyncpg, and how many
rows PostgreSQL read and threw away executing one of them (EXPLAIN ANALYZE)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from channel_bridge.db import bulk


def record_sent_statements(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[Any]]]:
    """Every statement the bulk helpers hand to asyncpg from now on, with its arguments."""
    statements: list[tuple[str, list[Any]]] = []
    fetch = bulk._fetch_raw

    async def recording(connection: Any, driver: Any, statement: str, args: Any) -> list[Any]:
        statements.append((statement, list(args)))
        return await fetch(connection, driver, statement, args)

    monkeypatch.setattr(bulk, "_fetch_raw", recording)
    return statements


async def rows_thrown_away(session: Any, statement: str, args: list[Any]) -> int:
    """Rows the executed plan read and threw away (filters and join filters, every loop)."""
    raw = await (await session.connection()).get_raw_connection()
    document = await raw.driver_connection.fetchval(
        f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", *args
    )
    thrown = 0

    def walk(node: dict[str, Any]) -> None:
        nonlocal thrown
        loops = node.get("Actual Loops", 1)
        for key in ("Rows Removed by Filter", "Rows Removed by Join Filter"):
            thrown += int(node.get(key, 0) * loops)
        for child in node.get("Plans", ()):
            walk(child)

    # SQLAlchemy's asyncpg dialect sets a json codec on the connection: already decoded.
    plans = json.loads(document) if isinstance(document, str) else document
    walk(plans[0]["Plan"])
    return thrown


def statement_kind(statement: str, *, union_reads: str) -> str:
    """A short name for a statement the bulk helpers sent: `union_reads` for a read of two
    lookups in one (a UNION ALL over message_links), else its verb and table
    (`INSERT INTO deliveries`, also when it is a CTE around that insert)."""
    if "UNION ALL" in statement and "FROM message_links" in statement:
        return union_reads
    return statement.removeprefix("WITH inserted AS (").split(" (", 1)[0]
