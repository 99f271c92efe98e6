"""Attachments each way through a real `channel-bridge serve` process: its peak memory.

The bridge used to hold an attachment whole about three times over (read, joined, copied
into the upload body): one 24 MiB Nexus attachment raised its peak RSS by 77 MB. Streamed
through a spool (memory up to BRIDGE_MEDIA_SPOOL_MEMORY_BYTES, then the temp directory), a
24 MiB attachment each way must raise the peak (VmHWM) by less than 16 MiB. The simulators
run in this test's process, so what they hold is not counted.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

import httpx

from channel_bridge.platforms.nexus.client import SYNTHETIC_MEDIA_PREFIX
from channel_bridge.sandbox.mode import (
    DEMO_API_SECRET,
    DEMO_CHANNEL_PROVIDER_ID,
    DEMO_INTEGRATION_ID,
    DEMO_WEBHOOK_SECRET,
    SANDBOX_ACCOUNT,
)
from channel_bridge.sandbox.nexus import NexusSandbox, StoredMedia, create_nexus_sandbox
from channel_bridge.settings import Settings
from tests.conftest import TEST_CALLBACK_TOKEN
from tests.drills.harness import CHANNEL, BridgeProcess, LoopbackServer, wait_until

CCID = "00000000-0000-4000-8000-00000000cc1d"
CUSTOMER = "+15557654321"
MiB = 1024 * 1024
LARGE = 24 * MiB
# Peak RSS growth allowed for one large attachment each way (was 77 MB for one direction).
MAX_GROWTH = 16 * MiB


def peak_rss(pid: int) -> int:
    """VmHWM: the process's peak resident set since it started, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def payload(size: int) -> bytes:
    # Incompressible and distinct per call, so nothing along the way can share or shrink it.
    return os.urandom(size)


async def nexus_to_axp(bridge: BridgeProcess, nexus: NexusSandbox, sim: Any, size: int) -> None:
    media_id = uuid.uuid4().hex
    content = payload(size)
    nexus.media[media_id] = StoredMedia(media_id, CHANNEL, "clip.mp4", "video/mp4", content)
    before = len(sim.messages)
    message = {
        "id": f"nx-{uuid.uuid4().hex[:12]}",
        "channelId": CHANNEL,
        "from": CHANNEL,
        "to": CUSTOMER,
        "media": [
            {
                "url": SYNTHETIC_MEDIA_PREFIX + media_id,
                "contentType": "video/mp4",
                "filename": "clip.mp4",
            }
        ],
    }
    async with httpx.AsyncClient(base_url=bridge.url, timeout=30.0) as client:
        response = await nexus.emit_webhook(client, CHANNEL, message)
    assert response.status_code == 200, response.text
    arrived = await wait_until(lambda: len(sim.messages) > before, 60)
    assert arrived, bridge.log_tail()
    [attachment] = sim.messages[-1]["attachments"]
    stored = sim.media[attachment["attachmentId"]]["content"]
    assert hashlib.sha256(stored).digest() == hashlib.sha256(content).digest()


async def axp_to_nexus(bridge: BridgeProcess, nexus: NexusSandbox, sim: Any, size: int) -> None:
    content = payload(size)
    media_id = sim.store_media(content, name="scan.pdf", content_type="application/pdf")
    dialog = sim.messages[0]["providerDialogId"]
    before = len(nexus.calls("message"))
    event = {
        "eventType": "MESSAGES",
        "correlationId": str(uuid.uuid4()),
        "eventDate": "2026-11-24T01:00:00.000Z",
        "messageId": str(uuid.uuid4()),
        "accountId": SANDBOX_ACCOUNT,
        "dialogId": str(uuid.uuid4()),
        "engagementId": str(uuid.uuid4()),
        "status": "DELIVERED",
        "businessAccountName": DEMO_INTEGRATION_ID,
        "channelProviderId": DEMO_CHANNEL_PROVIDER_ID,
        "channelId": "Messaging",
        "providerDialogId": dialog,
        "senderParticipantId": str(uuid.uuid4()),
        "senderParticipantName": "Agent Smith",
        "senderParticipantType": "AGENT",
        "body": {"elementType": "file"},
        "headers": {"sourceAddress": CHANNEL, "sourceType": "nexus-async"},
        "attachments": [
            {
                "attachmentId": media_id,
                "name": "scan.pdf",
                "contentType": "application/pdf",
                "size": size,
                "url": sim.signed_media_path(media_id),
            }
        ],
    }
    async with httpx.AsyncClient(base_url=bridge.url, timeout=30.0) as client:
        response = await client.post(
            f"/axp/callbacks/{TEST_CALLBACK_TOKEN}/notifications", json=event
        )
    assert response.status_code == 200, response.text
    arrived = await wait_until(lambda: len(nexus.calls("message")) > before, 60)
    assert arrived, bridge.log_tail()
    [stored] = [m for m in nexus.media.values() if len(m.content) == size][-1:]
    assert hashlib.sha256(stored.content).digest() == hashlib.sha256(content).digest()


async def test_a_24_mib_attachment_each_way_raises_peak_rss_by_less_than_16_mib(
    seeded_database, axp, bridges, tmp_path
) -> None:
    sim, upstream = axp
    sim.faults.latency_s = 0.0
    sim.base_url = upstream.url  # its signed upload URIs must name the host the bridge calls
    settings = Settings(_env_file=None, _secrets_dir=None)
    nexus = NexusSandbox(ccid=CCID)
    nexus.add_channel(CHANNEL, webhook_secret=DEMO_WEBHOOK_SECRET, api_secret=DEMO_API_SECRET)
    nexus_server = LoopbackServer(create_nexus_sandbox(nexus, settings))
    await nexus_server.start()
    try:
        bridge = BridgeProcess(
            seeded_database,
            upstream.url,
            tmp_path,
            overrides={
                "BRIDGE_NEXUS_BASE_URL": nexus_server.url,
                "BRIDGE_HTTP_TIMEOUT_S": "60",
                "TMPDIR": str(tmp_path),
            },
        )
        bridges.append(bridge)
        await bridge.start()
        assert bridge.process is not None
        pid = bridge.process.pid
        # Warm up every code path (imports, pools, the on-disk spool) with 2 MiB each way.
        await nexus_to_axp(bridge, nexus, sim, 2 * MiB)
        await axp_to_nexus(bridge, nexus, sim, 2 * MiB)
        baseline = peak_rss(pid)

        await nexus_to_axp(bridge, nexus, sim, LARGE)
        await axp_to_nexus(bridge, nexus, sim, LARGE)
        growth = peak_rss(pid) - baseline
        print(f"bridge peak RSS {baseline / MiB:.1f} MiB -> +{growth / MiB:.1f} MiB")
        assert growth < MAX_GROWTH, f"peak RSS grew by {growth / MiB:.1f} MiB"
        # Spools are gone once their uploads are done.
        assert not [p for p in tmp_path.iterdir() if p.name.startswith("tmp")]
    finally:
        await nexus_server.stop()
