"""Enabled channels by Nexus channel id, kept briefly so a webhook does not query for them.

The Nexus webhook needs its channel (and the channel's webhook secrets) before it can check
the signature. At load, that lookup was a session, a pool checkout and a query per webhook —
the largest cost on the acknowledgement path — for data that changes only on admin writes.
Entries live `BRIDGE_CHANNEL_CACHE_TTL_S` seconds; a write through ChannelService or
IntegrationService in this process clears the cache at once (after its commit), and other
replicas see the change within the TTL. A message accepted in that window for a channel that
was just disabled is stopped at delivery (the handler re-reads the channel) and dead-lettered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.db.models import Channel
from channel_bridge.mappings.repository import ChannelRepository
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
        # Decrypted webhook secrets by their ciphertext: Fernet per request was ~4 % of an ack.
        self._secrets: dict[str, list[SecretStr]] = {}
        self._loading: dict[str, asyncio.Future[Channel | None]] = {}
        self._generation = 0

    async def get_enabled(self, nexus_channel_id: str) -> Channel | None:
        """The enabled channel with this id, or None (unknown or disabled; never cached)."""
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

    def webhook_secrets(self, channel: Channel, secret_box: SecretBox) -> list[SecretStr]:
        """The channel's decrypted webhook secrets (raises SecretBoxError if unreadable)."""
        token = channel.webhook_secrets_encrypted or ""
        cached = self._secrets.get(token)
        if cached is None:
            cached = secret_box.decrypt_list(token)
            if self._ttl_s > 0:
                self._secrets[token] = cached
        return cached

    def invalidate(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._secrets.clear()

    async def _load(self, nexus_channel_id: str) -> Channel | None:
        async with self._sessionmaker() as session:
            channel = await ChannelRepository(session).get_by_nexus_channel_id(nexus_channel_id)
        return channel if channel is not None and channel.enabled else None
