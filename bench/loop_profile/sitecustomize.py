"""An event-loop callback profiler for a bench's bridge process (imported by `site` at start-up).

`bench/ack_ab.py --loop-profile NAME` puts this directory on that tree's PYTHONPATH and sets
`BENCH_LOOP_PROFILE` to a file path; without the variable this module does nothing. It times
every callback the event loop runs (wall and thread CPU), keyed by the task's coroutine and the
place it resumed from, and every garbage collection by generation, which a sampling profiler
cannot tell apart: a callback that holds the loop for 10 ms delays every acknowledgement queued
behind it, while the same 10 ms spread over a hundred callbacks does not.

Signals, so the bench measures only the window it cares about (not start-up's lifespan and
`gc.collect()`): SIGUSR1 clears the counters, SIGUSR2 writes them as JSON to the file. Both
are acted on by the next callback's wrapper, never inside the handler.

Two costs of measuring: uvicorn's `loop="uvloop"` is swapped for asyncio's loop (uvloop's
handles are C and cannot be wrapped), which is slower, and each callback pays two clock reads.
Compare the profiled tree's latency with an unprofiled run, not with itself.

A key is built from the callback's attributes only: calling `repr()` on a callback's owner is
not safe (an aiohttp response half-way through `start()` broke the relay's sends when a
diagnostic version did that).
"""

from __future__ import annotations

import os

if os.environ.get("BENCH_LOOP_PROFILE"):
    import asyncio
    import asyncio.events
    import collections
    import gc
    import json
    import signal
    import time
    from typing import Any

    import uvloop

    _PATH = os.environ["BENCH_LOOP_PROFILE"]
    _BUCKETS_MS = (0.5, 1, 2, 5, 10, 20, 50, 100)
    _requests: list[str] = []

    class _Book:
        def __init__(self) -> None:
            self.started = time.perf_counter()
            self.wall: collections.Counter[str] = collections.Counter()
            self.cpu: collections.Counter[str] = collections.Counter()
            self.count: collections.Counter[str] = collections.Counter()
            self.longest: list[tuple[float, str]] = []  # the 20 longest, kept sorted
            self.histogram = [0] * (len(_BUCKETS_MS) + 1)
            self.gc_count = [0, 0, 0]
            self.gc_ms = [0.0, 0.0, 0.0]
            self.gc_worst_ms = [0.0, 0.0, 0.0]

        def record(self, key: str, wall: float, cpu: float) -> None:
            self.wall[key] += wall
            self.cpu[key] += cpu
            self.count[key] += 1
            ms = wall * 1000
            bucket = next((i for i, bound in enumerate(_BUCKETS_MS) if ms < bound), -1)
            self.histogram[bucket] += 1
            if len(self.longest) < 20 or wall > self.longest[0][0]:
                self.longest.append((wall, key))
                self.longest.sort()
                del self.longest[:-20]

        def summary(self) -> dict[str, Any]:
            elapsed = time.perf_counter() - self.started
            busy = sum(self.wall.values())
            return {
                "elapsed_s": elapsed,
                "callbacks": sum(self.count.values()),
                "busy_s": busy,
                "busy_cpu_s": sum(self.cpu.values()),
                "buckets_ms": list(_BUCKETS_MS),
                "histogram": self.histogram,
                "by_total": [
                    {
                        "key": key,
                        "n": self.count[key],
                        "wall_s": wall,
                        "mean_wall_us": wall / self.count[key] * 1e6,
                        "mean_cpu_us": self.cpu[key] / self.count[key] * 1e6,
                    }
                    for key, wall in self.wall.most_common(25)
                ],
                "longest": [
                    {"ms": wall * 1000, "key": key} for wall, key in reversed(self.longest)
                ],
                "gc": [
                    {"generation": g, "n": n, "total_ms": ms, "worst_ms": worst}
                    for g, (n, ms, worst) in enumerate(
                        zip(self.gc_count, self.gc_ms, self.gc_worst_ms, strict=True)
                    )
                ],
                "gc_threshold": gc.get_threshold(),
            }

    _book = _Book()

    def _where(callback: Any) -> str:
        """`task <coroutine> @ <innermost awaiting coroutine> <file>:<line>`, or `cb <name>`."""
        task = getattr(callback, "__self__", None)
        if not isinstance(task, asyncio.Task):
            return "cb " + (getattr(callback, "__qualname__", None) or type(callback).__name__)
        outer = inner = task.get_coro()
        while (deeper := getattr(inner, "cr_await", None)) is not None and hasattr(
            deeper, "cr_frame"
        ):
            inner = deeper
        frame = getattr(inner, "cr_frame", None)
        place = "-"
        if frame is not None:
            path = frame.f_code.co_filename
            path = path.split("site-packages/")[-1].split("/src/")[-1].split("/lib/python3.")[-1]
            place = f"{path}:{frame.f_lineno}"
        name = getattr(outer, "__qualname__", None) or type(outer).__name__
        return f"task {name} @ {getattr(inner, '__qualname__', '?')} {place}"

    def _service() -> None:
        global _book
        while _requests:
            request = _requests.pop(0)
            if request == "reset":
                _book = _Book()
            else:
                tmp = f"{_PATH}.tmp"
                with open(tmp, "w") as out:
                    json.dump(_book.summary(), out)
                os.replace(tmp, _PATH)

    _run = asyncio.events.Handle._run

    def _timed_run(self: asyncio.events.Handle) -> None:
        key = _where(self._callback)
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            _run(self)
        finally:
            _book.record(key, time.perf_counter() - wall, time.thread_time() - cpu)
            if _requests:
                _service()

    asyncio.events.Handle._run = _timed_run  # type: ignore[method-assign]
    uvloop.new_event_loop = asyncio.new_event_loop  # uvicorn's loop="uvloop" factory reads this

    _gc_started = [0.0]

    def _on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            _gc_started[0] = time.perf_counter()
            return
        ms = (time.perf_counter() - _gc_started[0]) * 1000
        generation = info["generation"]
        _book.gc_count[generation] += 1
        _book.gc_ms[generation] += ms
        _book.gc_worst_ms[generation] = max(_book.gc_worst_ms[generation], ms)

    gc.callbacks.append(_on_gc)
    signal.signal(signal.SIGUSR1, lambda *_: _requests.append("reset"))
    signal.signal(signal.SIGUSR2, lambda *_: _requests.append("dump"))
