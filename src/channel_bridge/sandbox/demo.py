"""`channel-bridge demo`: a scripted conversation through the sandboxed bridge, hop by hop.

The bridge is served by uvicorn on loopback (SQLite in a temporary directory, sandbox mode:
simulated AXP, Nexus and Akixi in the same process). A customer message with an image is
posted to the Nexus webhook over HTTP; each hop is then awaited on the simulators' records and
printed with the time it took. Any hop that does not happen in time fails the demo.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from rich.console import Console
from rich.table import Table

from channel_bridge.app import create_app
from channel_bridge.db.migrate import upgrade
from channel_bridge.platforms.nexus.client import SYNTHETIC_MEDIA_PREFIX
from channel_bridge.sandbox.mode import (
    DEMO_GENESYS_CLOUD_INTEGRATION,
    DEMO_NEXUS_CHANNEL,
    GENESYS_CLOUD_HOST,
    Sandbox,
)
from channel_bridge.sandbox.nexus import StoredMedia
from channel_bridge.settings import Settings

CUSTOMER = "+15557654321"
HOP_TIMEOUT_S = 10.0
# A 1x1 PNG: small, but a real image the media stores carry byte for byte.
PIXEL_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@dataclass
class Hop:
    name: str
    detail: str
    elapsed_ms: float | None
    ok: bool


class DemoFailed(Exception):
    pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_for(condition: Callable[[], Any], timeout_s: float = HOP_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        await asyncio.sleep(0.01)
    return None


async def run_demo(
    console: Console, *, workdir: Path | None = None, backend: str = "nexus"
) -> list[Hop]:
    workdir = workdir or Path(tempfile.mkdtemp(prefix="bridge-demo-"))
    database_url = f"sqlite+aiosqlite:///{workdir / 'demo.db'}"
    upgrade(database_url)
    port = _free_port()
    settings = Settings(
        env="dev",
        sandbox=None,
        database_url=database_url,
        public_base_url=f"http://127.0.0.1:{port}",
        log_level="ERROR",
        worker_enabled=True,
        worker_poll_interval_s=0.2,
        axp_base_url=None,
        nexus_base_url=None,
        akixi_url=None,
    )
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
        )
    )
    serving = asyncio.create_task(server.serve())
    try:
        if not await _wait_for(lambda: server.started, 15):
            raise DemoFailed("the bridge did not start")
        conversation = _gc_conversation if backend == "genesys-cloud" else _conversation
        assert app.sandbox is not None  # sandbox mode: no upstream configured
        return await conversation(app.sandbox, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        await serving


def _recorder(hops: list[Hop]) -> Callable[[str, str, bool], None]:
    """Records each hop with the time since the start; a failed hop ends the demo."""
    started = time.monotonic()

    def hop(name: str, detail: str, ok: bool) -> None:
        hops.append(Hop(name, detail, (time.monotonic() - started) * 1000 if ok else None, ok))
        if not ok:
            raise DemoFailed(f"{name}: {detail}")

    return hop


async def _conversation(sandbox: Sandbox, base_url: str) -> list[Hop]:
    hops: list[Hop] = []
    hop = _recorder(hops)

    media_id = str(uuid.uuid4())
    sandbox.nexus.media[media_id] = StoredMedia(
        media_id, DEMO_NEXUS_CHANNEL, "damaged-box.png", "image/png", PIXEL_PNG
    )
    message = {
        "id": f"demo-{uuid.uuid4().hex[:12]}",
        "channelId": DEMO_NEXUS_CHANNEL,
        "from": DEMO_NEXUS_CHANNEL,
        "to": CUSTOMER,
        "text": "Hello, my parcel arrived damaged",
        "media": [
            {
                "url": SYNTHETIC_MEDIA_PREFIX + media_id,
                "contentType": "image/png",
                "filename": "damaged-box.png",
            }
        ],
    }
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        response = await sandbox.nexus.emit_webhook(client, DEMO_NEXUS_CHANNEL, message)
    ack_id = response.json().get("messageId") if response.status_code == 200 else None
    hop("Nexus → bridge webhook", f"HTTP {response.status_code}, messageId {ack_id}", bool(ack_id))

    axp = sandbox.axp
    uploaded = await _wait_for(lambda: next(iter(axp.media.values()), None))
    hop("bridge → AXP media store", "image uploaded" if uploaded else "no upload", bool(uploaded))
    sent = await _wait_for(
        lambda: next((m for m in axp.messages if m.get("providerMessageId") == message["id"]), None)
    )
    hop(
        "bridge → AXP send message",
        f"providerDialogId {sent.get('providerDialogId')}, "
        f"{len(sent.get('attachments') or [])} attachment"
        if sent
        else "AXP received nothing",
        bool(sent),
    )

    receipt = await _wait_for(lambda: sandbox.nexus.calls("receipt"))
    hop(
        "AXP DELIVERED → Nexus receipt",
        f"receipt {receipt[0].document}" if receipt else "no receipt",
        bool(receipt),
    )
    reply = await _wait_for(lambda: sandbox.nexus.calls("message"))
    text = _reply_text(reply[0].document) if reply else None
    hop(
        "AXP agent reply → Nexus message",
        f"“{text}” to {CUSTOMER}" if reply else "no reply",
        bool(reply),
    )
    return hops


async def _gc_conversation(sandbox: Sandbox, base_url: str) -> list[Hop]:
    """The same conversation with a Genesys Cloud Open Messaging channel as the Genesys side."""
    hops: list[Hop] = []
    hop = _recorder(hops)

    gc = sandbox.genesys_cloud
    attachment = gc.attachment(GENESYS_CLOUD_HOST, PIXEL_PNG, "image/png", "damaged-box.png")
    message = gc.agent_message(
        DEMO_GENESYS_CLOUD_INTEGRATION,
        CUSTOMER,
        "Hello, my parcel arrived damaged",
        attachments=[attachment],
    )
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        response = await gc.emit_webhook(client, DEMO_GENESYS_CLOUD_INTEGRATION, message)
        ack_id = response.json().get("messageId") if response.status_code == 200 else None
        hop(
            "Genesys Cloud → bridge webhook (X-Hub-Signature-256)",
            f"HTTP {response.status_code}, messageId {ack_id}",
            bool(ack_id),
        )
        axp = sandbox.axp
        uploaded = await _wait_for(lambda: next(iter(axp.media.values()), None))
        detail = "image uploaded" if uploaded else "no upload"
        hop("bridge → AXP media store", detail, bool(uploaded))
        sent = await _wait_for(
            lambda: next(
                (m for m in axp.messages if m.get("providerMessageId") == message["id"]), None
            )
        )
        hop(
            "bridge → AXP send message",
            f"providerDialogId {sent.get('providerDialogId')}, "
            f"{len(sent.get('attachments') or [])} attachment"
            if sent
            else "AXP received nothing",
            bool(sent),
        )
        receipt = await _wait_for(lambda: gc.calls("receipt"))
        hop(
            "AXP DELIVERED → Genesys Cloud inbound receipt",
            f"status {receipt[0].document.get('status')}" if receipt else "no receipt",
            bool(receipt),
        )
        reply = await _wait_for(lambda: gc.calls("message"))
        text = _reply_text(reply[0].document) if reply else None
        hop(
            "AXP agent reply → Genesys Cloud inbound message",
            f"“{text}” from {CUSTOMER}" if reply else "no reply",
            bool(reply),
        )
        typing = gc.agent_typing(DEMO_GENESYS_CLOUD_INTEGRATION, CUSTOMER)
        response = await gc.emit_webhook(client, DEMO_GENESYS_CLOUD_INTEGRATION, typing)
        indicator = await _wait_for(lambda: axp.typing)
        hop(
            "Genesys Cloud agent typing → AXP typing",
            "typing shown in AXP" if indicator else f"HTTP {response.status_code}, nothing",
            bool(indicator),
        )
    return hops


def _reply_text(document: Any) -> str | None:
    return document.get("text") if isinstance(document, dict) else None


def print_transcript(console: Console, hops: list[Hop], error: str | None = None) -> None:
    table = Table(title="channel-bridge demo (sandbox upstreams)", show_lines=False)
    table.add_column("hop")
    table.add_column("detail", overflow="fold")
    table.add_column("t (ms)", justify="right")
    for item in hops:
        table.add_row(
            ("[green]✓[/] " if item.ok else "[red]✗[/] ") + item.name,
            item.detail,
            f"{item.elapsed_ms:.0f}" if item.elapsed_ms is not None else "—",
        )
    console.print(table)
    if error:
        console.print(f"[red]demo failed:[/] {error}")
    else:
        console.print("[green]every hop succeeded[/]")


def main(console: Console | None = None, backend: str = "nexus") -> int:
    # A transcript wide enough to read when piped (CI logs, README).
    console = console or Console(width=110)
    hops: list[Hop] = []
    try:
        hops = asyncio.run(run_demo(console, backend=backend))
    except DemoFailed as exc:
        print_transcript(console, hops, str(exc))
        return 1
    print_transcript(console, hops)
    return 0
