"""The per-process media budget: transfers past it wait, a closed spool releases its share."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from channel_bridge.media import MediaBudget, MediaTransfers


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def too_large(size: int) -> Exception:
    return ValueError(f"{size} bytes")


async def test_a_transfer_past_the_budget_waits_until_a_spool_is_closed() -> None:
    transfers = MediaTransfers(budget=MediaBudget(100), memory_bytes=10)
    first = await transfers.spool(chunks(b"a" * 60), declared=60, limit=1000, too_large=too_large)
    assert transfers.budget is not None and transfers.budget.in_use == 60
    second = asyncio.create_task(
        transfers.spool(chunks(b"b" * 50), declared=50, limit=1000, too_large=too_large)
    )
    await asyncio.sleep(0.05)
    assert not second.done()  # 60 + 50 > 100
    first.close()
    spool = await asyncio.wait_for(second, timeout=5)
    assert spool.read() == b"b" * 50 and transfers.budget.in_use == 50
    spool.close()
    await asyncio.sleep(0)
    assert transfers.budget.in_use == 0


async def test_undeclared_sizes_reserve_the_limit_and_one_larger_than_the_budget_runs_alone() -> (
    None
):
    budget = MediaBudget(100)
    transfers = MediaTransfers(budget=budget, memory_bytes=10)
    async with await transfers.spool(
        chunks(b"x" * 30), declared=None, limit=500, too_large=too_large
    ) as spool:
        assert spool.size == 30 and budget.in_use == 100  # the whole budget, clipped
    assert budget.in_use == 0


async def test_a_refused_or_failed_transfer_gives_its_share_back() -> None:
    budget = MediaBudget(100)
    transfers = MediaTransfers(budget=budget, memory_bytes=10)
    with pytest.raises(ValueError, match="2000 bytes"):
        await transfers.spool(chunks(b""), declared=2000, limit=1000, too_large=too_large)
    assert budget.in_use == 0
    with pytest.raises(ValueError, match="60 bytes"):
        await transfers.spool(
            chunks(b"y" * 30, b"y" * 30), declared=None, limit=50, too_large=too_large
        )
    assert budget.in_use == 0


async def test_a_spool_stays_in_memory_up_to_its_threshold_then_goes_to_disk(tmp_path) -> None:
    transfers = MediaTransfers(budget=None, memory_bytes=100, directory=str(tmp_path))
    small = await transfers.spool(
        chunks(b"s" * 100), declared=None, limit=1000, too_large=too_large
    )
    large = await transfers.spool(
        chunks(b"l" * 100, b"l"), declared=None, limit=1000, too_large=too_large
    )
    assert (small.on_disk, large.on_disk) == (False, True)
    # httpx sizes the reader with seek/tell: reading it must not push a small spool to disk.
    reader = small.reader()
    with pytest.raises(OSError):
        reader.fileno()
    assert reader.read() == b"s" * 100 and not small.on_disk
    assert large.read() == b"l" * 101
    small.close()
    large.close()
