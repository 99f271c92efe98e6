"""Serve ASGI apps with uvicorn on loopback, in-process, as asyncio tasks.

The socket is bound before the app is built (`LoopbackServer().url` is known up front), so a
bridge can be configured with its own public URL and simulators with theirs, without the race
of "find a free port, close it, hope nobody takes it".
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import uvicorn

STARTUP_TIMEOUT_S = 15.0


class LoopbackServer:
    """One uvicorn server on 127.0.0.1, on a port chosen by the OS and held from the start."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = int(self._socket.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    @contextlib.asynccontextmanager
    async def serve(
        self, app: Any, *, lifespan: Literal["on", "off", "auto"] = "on"
    ) -> AsyncIterator[LoopbackServer]:
        """Run `app` until the block ends, then shut down gracefully (lifespan included)."""
        config = uvicorn.Config(
            app,
            lifespan=lifespan,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        # Signal handlers belong to the test runner, not to servers started and stopped inside it
        # (nested servers would restore each other's handlers out of order).
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
        task = asyncio.create_task(
            server.serve(sockets=[self._socket]), name=f"uvicorn:{self.port}"
        )
        try:
            await _until(lambda: server.started or task.done(), STARTUP_TIMEOUT_S)
            if task.done():
                task.result()  # re-raise what stopped it
                raise RuntimeError(f"server on {self.url} exited during start-up")
            if not server.started:
                raise RuntimeError(f"server on {self.url} did not start in {STARTUP_TIMEOUT_S} s")
            yield self
        finally:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._socket.close()


async def _until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    # uvicorn exposes `started` only as a flag, so there is no event to wait on.
    while not condition() and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
