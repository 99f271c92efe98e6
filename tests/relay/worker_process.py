"""A relay worker in its own process, for the crash and two-process tests (not a test module).

    python -m tests.relay.worker_process DATABASE_URL RECORD_FILE MODE

The destination `test.sink` appends one JSON line per call to RECORD_FILE (O_APPEND, so lines
from several processes never interleave). MODE `drain` answers every call; MODE `hang`
records the call, as if the upstream had accepted it, and then never returns: the process is
SIGKILLed holding its leases, before it can record the success.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

from channel_bridge.db.engine import create_engine, create_sessionmaker
from channel_bridge.ops.logging import configure_logging
from channel_bridge.relay.destinations import DeliveryContext, DestinationRegistry
from channel_bridge.relay.worker import RelayWorker
from channel_bridge.settings import Settings


def record(path: str, ctx: DeliveryContext, event: str) -> None:
    line = (
        json.dumps(
            {
                "pid": os.getpid(),
                "event": event,
                "delivery_id": ctx.delivery_id,
                "key": ctx.idempotency_key,
                "partition": ctx.partition_key,
                "n": ctx.payload.get("n"),
                "attempt": ctx.attempt_number,
            }
        )
        + "\n"
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


async def main(database_url: str, record_path: str, mode: str) -> None:
    settings = Settings(
        database_url=database_url,
        env="dev",
        worker_concurrency=16,
        worker_lease_s=60.0,
        worker_poll_interval_s=0.5,
        log_level="WARNING",
    )
    configure_logging(level="WARNING", fmt="console")
    engine = create_engine(settings)
    registry = DestinationRegistry()

    async def sink(ctx: DeliveryContext) -> dict[str, int]:
        record(record_path, ctx, "start")
        if mode == "hang":
            await asyncio.Event().wait()
        await asyncio.sleep(0.001)  # a real call yields; lets the other process interleave
        record(record_path, ctx, "end")
        return {"pid": os.getpid()}

    registry.register("test.sink", sink)
    worker = RelayWorker(
        create_sessionmaker(engine), registry, settings, worker_id=f"proc-{os.getpid()}"
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await worker.start()
    print("ready", flush=True)
    await stop.wait()
    await worker.stop()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
