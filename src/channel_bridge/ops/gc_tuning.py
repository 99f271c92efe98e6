"""Garbage-collector settings for a serving process (BRIDGE_GC_GEN0_THRESHOLD).

A webhook waits a few milliseconds for its group commit, and the worker's deliveries wait for
the upstream. Objects that live that long survive young collections and are traversed again
and again, and each full collection walks every object the process made at start-up (the
app, SQLAlchemy's and pydantic's metadata). Measured on the webhook at saturation
(docs/performance.md): CPU per request 748 µs with Python's defaults, 618 µs after
`gc.freeze()`, 559 µs with the young threshold also raised to 200,000, and 532 µs with the
collector off. Reference counting still frees all acyclic garbage at once; only cycles wait
for the (rarer) collections.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def tuned_gc(gen0_threshold: int) -> Iterator[None]:
    """Freeze what start-up built and raise the young threshold; undo both on exit.

    `gen0_threshold` 0 leaves the collector as Python configured it.
    """
    if gen0_threshold <= 0:
        yield
        return
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()  # start-up objects move to a generation no collection walks
    gc.set_threshold(gen0_threshold, previous[1], previous[2])
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()  # an app stopped inside a longer process (tests) becomes collectable
