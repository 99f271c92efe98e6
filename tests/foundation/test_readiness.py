"""/readyz follows the database: 503 (never 500) while PostgreSQL is unreachable, 200 again
once it is back, in the same process. Routes that need the database answer 503 + Retry-After.

The outage is made by a TCP forwarder this test owns, standing between the app and the
session's PostgreSQL: closing it (and cutting its open connections) looks to the app exactly
like a database that went away, without stopping the server other tests share.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import httpx
import pytest
from sqlalchemy import text

from channel_bridge.app import create_app
from channel_bridge.deps import SessionDep
from tests.conftest import make_settings
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.postgres_only


class TcpForwarder:
    """127.0.0.1:<port> -> target, which can be shut (connections cut) and reopened."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def shut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()


@pytest.fixture
async def forwarded_database(postgres_server: PostgresServer):
    name = f"bridge_ready_{uuid.uuid4().hex[:8]}"
    janitor = postgres_server.janitor(name)
    janitor.init()
    forwarder = TcpForwarder(postgres_server.host, postgres_server.port)
    await forwarder.open()
    try:
        url = f"postgresql+asyncpg://{postgres_server.user}@127.0.0.1:{forwarder.port}/{name}"
        yield forwarder, url
    finally:
        with contextlib.suppress(AssertionError):
            await forwarder.shut()
        janitor.drop()


async def test_readyz_is_503_while_the_database_is_down_and_200_once_it_is_back(
    forwarded_database,
) -> None:
    forwarder, url = forwarded_database
    app = create_app(make_settings(url, db_connect_timeout_s=2.0))

    @app.get("/test/needs-database")
    async def needs_database(session: SessionDep) -> dict[str, int]:
        return {"one": (await session.execute(text("SELECT 1"))).scalar_one()}

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge.test") as client:
            assert (await client.get("/readyz")).json()["status"] == "ready"
            assert (await client.get("/test/needs-database")).json() == {"one": 1}

            await forwarder.shut()

            for _ in range(2):  # the pooled connections are dead too, not just new ones
                response = await client.get("/readyz")
                assert response.status_code == 503
                body = response.json()
                assert body["status"] == "unavailable" and body["reason"].startswith("database")
                assert response.headers["x-request-id"]
            response = await client.get("/test/needs-database")
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["retry-after"]
            assert response.json()["type"].endswith("/database-unavailable")
            # Liveness has no I/O: the pod is not restarted for a database outage.
            assert (await client.get("/healthz")).status_code == 200

            await forwarder.open()  # same port: the database is back

            response = await client.get("/readyz")
            assert response.status_code == 200, response.text
            assert (await client.get("/test/needs-database")).json() == {"one": 1}
