"""The serving process's GC settings are applied for the app's life and undone after it."""

from __future__ import annotations

import gc

from channel_bridge.ops.gc_tuning import tuned_gc
from tests.conftest import make_settings, running_app


def test_tuned_gc_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    with tuned_gc(123_456):
        assert gc.get_threshold() == (123_456, before[1], before[2])
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_zero_keeps_pythons_collector_settings() -> None:
    before = gc.get_threshold()
    with tuned_gc(0):
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


async def test_the_app_tunes_the_collector_while_it_runs(database_url: str) -> None:
    before = gc.get_threshold()
    async with running_app(make_settings(database_url, gc_gen0_threshold=54_321)):
        assert gc.get_threshold()[0] == 54_321
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
