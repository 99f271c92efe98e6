"""OAuth client-credentials tokens, vendor-free: a cached token per slot, refreshed once for all.

A vendor's `httpx.Auth` (AXP's, Genesys Cloud's) asks its `TokenSlot` for a fresh token and
says how to fetch one. The slot's lock is held only around that fetch, so a thousand
concurrent requests cause one token request and no request waits on another's I/O.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from channel_bridge.ops.logging import secrets as log_secrets


@dataclass(slots=True)
class AccessToken:
    value: str
    expires_in_s: float
    obtained_at: float

    def is_fresh(self, now: float, refresh_ratio: float) -> bool:
        return now - self.obtained_at < self.expires_in_s * refresh_ratio


@dataclass(slots=True)
class TokenSlot:
    """One cached token, and the lock held only while it is refreshed."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    token: AccessToken | None = None

    async def fresh(
        self,
        *,
        clock: Callable[[], float],
        refresh_ratio: float,
        fetch: Callable[[], Awaitable[AccessToken]],
    ) -> AccessToken:
        """The cached token while fresh, else one `fetch` shared by every waiting caller."""
        current = self.token
        if current is not None and current.is_fresh(clock(), refresh_ratio):
            return current
        async with self.lock:
            current = self.token
            if current is not None and current.is_fresh(clock(), refresh_ratio):
                return current
            self.token = await fetch()
            return self.token

    def invalidate(self, token: AccessToken) -> None:
        """Forget `token` if it is still the cached one (a newer token is kept)."""
        if self.token is token:
            self.token = None


class TokenCache:
    """Token slots by key (e.g. account and client id); share one instance to share tokens."""

    def __init__(self) -> None:
        self._slots: dict[tuple[str, ...], TokenSlot] = {}

    def entry(self, *key: str) -> TokenSlot:
        found = self._slots.get(key)
        if found is None:
            found = self._slots[key] = TokenSlot()
        return found


def read_token(
    response: httpx.Response,
    *,
    obtained_at: float,
    default_expires_in_s: float,
    unusable: Callable[[], Exception],
) -> AccessToken:
    """The token of a 2xx token answer (its value masked in logs from now on); the error
    `unusable()` when the answer has no usable `access_token`."""
    try:
        body = response.json()
        value = body["access_token"]
        if not isinstance(value, str) or not value:
            raise TypeError("access_token is not a string")
        expires_in = float(body.get("expires_in") or default_expires_in_s)
    except (ValueError, KeyError, TypeError) as exc:
        raise unusable() from exc
    log_secrets.add(value)
    return AccessToken(value=value, expires_in_s=expires_in, obtained_at=obtained_at)
