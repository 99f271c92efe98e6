"""Attachments in transit: streamed into a spool, never held whole, within a per-process budget.

A download streams into a `MediaSpool`: in memory up to `media_spool_memory_bytes`, on disk
(the temp directory) past that. The upload reads the spool back in 64 KiB chunks (httpx's
multipart encoder), so a 24 MiB attachment costs the process about one spool threshold of
memory instead of three copies of the file. Before a download's body is read, its declared
size (or, undeclared, the largest allowed) is reserved from the process's `MediaBudget`
(`media_max_in_flight_bytes`); a transfer that does not fit waits until others release theirs.
The spool holds its reservation until it is closed, i.e. until its upload is done.
"""

from __future__ import annotations

import asyncio
import io
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, cast

from channel_bridge.settings import Settings

CHUNK_BYTES = 64 * 1024
# Wake-up tasks are referenced until done (the loop keeps only weak references).
_NOTIFYING: set[asyncio.Task[None]] = set()


class MediaBudget:
    """Bytes of media in flight in this process, at most `limit`; reservations wait their turn."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.in_use = 0
        self._changed: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def acquire(self, size: int) -> int:
        """Reserve `size` bytes (at most the whole budget, so any transfer can run alone)."""
        amount = min(max(1, size), self.limit)
        changed = self._condition()
        async with changed:
            await changed.wait_for(lambda: self.in_use + amount <= self.limit)
            self.in_use += amount
        return amount

    def release(self, amount: int) -> None:
        self.in_use = max(0, self.in_use - amount)
        changed = self._changed
        if changed is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # closed outside any loop: no one can be waiting
            return
        # Release runs from close() (sync): wake the waiters from a task of their loop.
        task = loop.create_task(_notify(changed))
        _NOTIFYING.add(task)
        task.add_done_callback(_NOTIFYING.discard)


async def _notify(changed: asyncio.Condition) -> None:
    async with changed:
        changed.notify_all()


class MediaSpool:
    """One attachment: written chunk by chunk, size-limited, read back as a file."""

    def __init__(
        self,
        *,
        memory_bytes: int,
        directory: str | None = None,
        content_type: str | None = None,
        filename: str | None = None,
    ) -> None:
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=memory_bytes, dir=directory)
        self.size = 0
        self.content_type = content_type
        self.filename = filename
        self._release: Callable[[], None] | None = None

    @classmethod
    def of(cls, content: bytes, **kwargs: Any) -> MediaSpool:
        """A spool holding `content` (tests, sandbox, small in-memory files)."""
        spool = cls(memory_bytes=max(len(content), 1), **kwargs)
        spool.write(content)
        return spool

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self.size += len(chunk)

    def reader(self) -> IO[bytes]:
        """A file over the content from its start, for httpx's multipart encoder.

        Without `fileno`: httpx sizes a file through fileno() when it can, which would push an
        in-memory spool to disk; it falls back to seek/tell.
        """
        return cast(IO[bytes], _SpoolReader(self._file))

    def chunks(self) -> Iterator[bytes]:
        self._file.seek(0)
        while chunk := self._file.read(CHUNK_BYTES):
            yield chunk

    def read(self) -> bytes:
        """The whole content (small files only: this is the copy the spool exists to avoid)."""
        return b"".join(self.chunks())

    @property
    def on_disk(self) -> bool:
        return bool(getattr(self._file, "_rolled", True))

    def hold(self, release: Callable[[], None]) -> None:
        self._release = release

    def close(self) -> None:
        self._file.close()
        release, self._release = self._release, None
        if release is not None:
            release()

    def __enter__(self) -> MediaSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> MediaSpool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class _SpoolReader(io.RawIOBase):
    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        file.seek(0)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self._file.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def fileno(self) -> int:
        raise OSError("a spool has no file descriptor of its own")


@dataclass(slots=True)
class MediaTransfers:
    """How this process moves attachments: its budget and where spools live."""

    budget: MediaBudget | None
    memory_bytes: int
    directory: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> MediaTransfers:
        return cls(
            budget=MediaBudget(settings.media_max_in_flight_bytes),
            memory_bytes=settings.media_spool_memory_bytes,
            directory=settings.media_spool_dir,
        )

    async def spool(
        self,
        chunks: AsyncIterator[bytes],
        *,
        declared: int | None,
        limit: int,
        too_large: Callable[[int], Exception],
    ) -> MediaSpool:
        """Stream `chunks` into a spool, refusing more than `limit` bytes (declared or received).

        The budget is reserved (declared size, else `limit`) before the first chunk is read.
        """
        if declared is not None and declared > limit:
            raise too_large(declared)
        budget = self.budget
        wanted = declared if declared is not None else limit
        reserved = await budget.acquire(wanted) if budget is not None else 0
        spool = MediaSpool(memory_bytes=self.memory_bytes, directory=self.directory)
        if budget is not None:
            spool.hold(lambda: budget.release(reserved))
        try:
            async for chunk in chunks:
                if spool.size + len(chunk) > limit:
                    raise too_large(spool.size + len(chunk))
                spool.write(chunk)
        except BaseException:
            spool.close()
            raise
        return spool

    async def spool_response(
        self, response: Any, *, limit: int, too_large: Callable[[int], Exception]
    ) -> MediaSpool:
        """A streamed HTTP response's body in a spool, its declared length reserved and
        checked first; the spool carries the response's content type."""
        spool = await self.spool(
            response.aiter_bytes(),
            declared=declared_length(response.headers),
            limit=limit,
            too_large=too_large,
        )
        spool.content_type = response.headers.get("content-type")
        return spool


# Without settings (tools, tests): spool past 1 MiB, no process budget.
DEFAULT_TRANSFERS = MediaTransfers(budget=None, memory_bytes=1024 * 1024)


def declared_length(headers: Any) -> int | None:
    value = headers.get("content-length")
    return int(value) if value and value.isdigit() else None
