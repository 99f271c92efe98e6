"""Channel mappings by Nexus channel id, kept in memory for the webhook and the relay worker.

The Nexus webhook needs its channel (and the channel's webhook secrets) before it can check
the signature, and every delivery needs the channel's AXP mapping and Nexus API secret. At
load, that lookup was a session, a pool checkout and a query each time, for data that
changes only on admin writes.

How long a change takes to be seen:
- in the process that made it: at once (the services clear the cache after their commit);
- in every other process on PostgreSQL: within milliseconds, because each admin write sends
  `NOTIFY bridge_channels` in its transaction and every process listens for it;
- when the LISTEN connection is down (or on SQLite with a second process): at most
  `BRIDGE_CHANNEL_CACHE_TTL_S` (5 s by default), after which an entry is read again.
A delivery that was already past this check when its channel was disabled still goes out;
every later one of that channel is dead-lettered with the reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.db.models import Channel
from channel_bridge.db.notifications import DatabaseNotifications
from channel_bridge.mappings.repository import CHANNELS_CHANGED, ChannelRepository
from channel_bridge.security import SecretBox


class ChannelCache:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, tuple[float, Channel]] = {}
        # Decrypted secrets by their ciphertext: Fernet per request was ~4 % of an ack.
        self._secret_lists: dict[str, list[SecretStr]] = {}
        self._secrets: dict[str, SecretStr] = {}
        self._loading: dict[str, asyncio.Future[Channel | None]] = {}
        self._generation = 0

    async def listen(self, notifications: DatabaseNotifications) -> None:
        """Clear on every channel write in any process, and after a lost LISTEN connection."""
        await notifications.subscribe(CHANNELS_CHANGED, self.invalidate)
        notifications.on_reconnect(self.invalidate)

    async def get(self, nexus_channel_id: str) -> Channel | None:
        """The channel with this id, enabled or not; None if there is none (never cached)."""
        if self._ttl_s <= 0:
            return await self._load(nexus_channel_id)
        entry = self._entries.get(nexus_channel_id)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        pending = self._loading.get(nexus_channel_id)
        if pending is not None:
            # Single flight: concurrent misses for one channel share one query.
            return await asyncio.shield(pending)
        future: asyncio.Future[Channel | None] = asyncio.get_running_loop().create_future()
        self._loading[nexus_channel_id] = future
        generation = self._generation
        try:
            channel = await self._load(nexus_channel_id)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: only the waiters re-raise it
            raise
        finally:
            self._loading.pop(nexus_channel_id, None)
        # A write that invalidated while we were reading must not be undone by this result.
        if channel is not None and generation == self._generation:
            self._entries[nexus_channel_id] = (self._clock() + self._ttl_s, channel)
        future.set_result(channel)
        return channel

    async def get_enabled(self, nexus_channel_id: str) -> Channel | None:
        """The enabled channel with this id, or None (unknown or disabled)."""
        channel = await self.get(nexus_channel_id)
        return channel if channel is not None and channel.enabled else None

    def webhook_secrets(self, channel: Channel, secret_box: SecretBox) -> list[SecretStr]:
        """The channel's decrypted webhook secrets (raises SecretBoxError if unreadable)."""
        token = channel.webhook_secrets_encrypted or ""
        cached = self._secret_lists.get(token)
        if cached is None:
            cached = secret_box.decrypt_list(token)
            if self._ttl_s > 0:
                self._secret_lists[token] = cached
        return cached

    def secret(self, ciphertext: str, secret_box: SecretBox) -> SecretStr:
        """One decrypted secret (e.g. the channel's Nexus API secret), kept like the channel."""
        cached = self._secrets.get(ciphertext)
        if cached is None:
            cached = secret_box.decrypt(ciphertext)
            if self._ttl_s > 0:
                self._secrets[ciphertext] = cached
        return cached

    def invalidate(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._secret_lists.clear()
        self._secrets.clear()

    async def _load(self, nexus_channel_id: str) -> Channel | None:
        async with self._sessionmaker() as session:
            return await ChannelRepository(session).get_by_nexus_channel_id(nexus_channel_id)
