"""PostgreSQL LISTEN/NOTIFY for the whole process: one connection, many channels.

Notifications are hints that something changed (deliveries queued, a channel mapping
written); nothing depends on them for correctness. Whoever subscribes also has a fallback
(the relay worker polls, the channel cache expires its entries), so a lost connection only
slows reactions down to that fallback until `ensure_connected` re-opens it. Because
notifications sent while the connection was down are lost, `on_reconnect` callbacks run
after every reconnect (the channel cache forgets everything then).

On SQLite there is one process and nothing to listen to: every method is a no-op.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection

from channel_bridge.ops.logging import get_logger

log = get_logger(__name__)

# How often a lost LISTEN connection is re-established; the fallbacks cover the gap.
LISTEN_RETRY_S = 30.0
CONNECT_TIMEOUT_S = 5.0


async def notify(connection: AsyncConnection, channel: str) -> None:
    """Send a notification on `channel`, delivered when the transaction commits."""
    if connection.dialect.name == "postgresql":
        await connection.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel})


class DatabaseNotifications:
    def __init__(self, url: URL, *, retry_s: float = LISTEN_RETRY_S) -> None:
        self._url = url
        self._enabled = url.get_backend_name() == "postgresql"
        self._retry_s = retry_s
        self._callbacks: dict[str, list[Callable[[], None]]] = defaultdict(list)
        self._reconnect_callbacks: list[Callable[[], None]] = []
        self._connection: Any = None
        self._attempted_at = float("-inf")
        self._ever_connected = False

    async def subscribe(self, channel: str, callback: Callable[[], None]) -> None:
        """Call `callback` (no arguments, must not block) on every notification on `channel`."""
        new_channel = channel not in self._callbacks
        self._callbacks[channel].append(callback)
        if new_channel and self.connected:
            await self._connection.add_listener(channel, self._dispatch)

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        self._reconnect_callbacks.append(callback)

    @property
    def connected(self) -> bool:
        return self._enabled and self._connection is not None and not self._connection.is_closed()

    async def ensure_connected(self) -> bool:
        """Open the connection if it is down and the retry interval has passed; True if up."""
        if not self._enabled or self.connected:
            return self.connected
        now = time.monotonic()
        if now - self._attempted_at < self._retry_s:
            return False
        self._attempted_at = now
        import asyncpg

        dsn = self._url.set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            connection = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
            for channel in self._callbacks:
                await connection.add_listener(channel, self._dispatch)
        except Exception as exc:
            log.warning("LISTEN failed; relying on polling and expiry", error=type(exc).__name__)
            return False
        self._connection = connection
        if self._ever_connected:
            for callback in self._reconnect_callbacks:
                callback()
        self._ever_connected = True
        return True

    async def keep_connected(self) -> None:
        """Re-open a lost connection every `retry_s`, until cancelled (a lifespan task)."""
        if not self._enabled:
            return
        while True:
            await self.ensure_connected()
            await asyncio.sleep(self._retry_s)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            await connection.close(timeout=2)
        except Exception:
            connection.terminate()

    def _dispatch(self, _connection: Any, _pid: int, channel: str, _payload: str) -> None:
        for callback in self._callbacks.get(channel, ()):
            try:
                callback()
            except Exception:  # a hint must never break the listener
                log.exception("notification callback failed", channel=channel)
