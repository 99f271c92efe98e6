"""Identifiers minted on the hot path (request ids, trace ids, acknowledgement ids)."""

from __future__ import annotations

import random


def random_hex_id() -> str:
    """128 random bits as 32 hex digits, the shape of `uuid4().hex`.

    These ids must be unique, not unguessable: none of them grants anything. `uuid4()` reads
    the kernel's random source on every call, and the profile of the webhook path showed three
    such calls per request costing ~4 % of it; Python's generator (seeded from the kernel, and
    reseeded in a forked child) gives the same collision odds without a system call.
    """
    return f"{random.getrandbits(128):032x}"
