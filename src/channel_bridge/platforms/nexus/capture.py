"""Write stored webhook bodies out as fixture files, secrets masked (real-payload bring-up)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.db.models import InboxEvent
from channel_bridge.mappings.repository import ChannelRepository
from channel_bridge.ops.logging import SENSITIVE_KEY, SecretRegistry
from channel_bridge.platforms.nexus.repository import StoredWebhookRepository
from channel_bridge.platforms.nexus.router import SOURCE
from channel_bridge.security import SecretBox, SecretBoxError
from channel_bridge.settings import Settings

MASK = "***"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def mask_document(node: Any, registry: SecretRegistry) -> Any:
    """Values under secret-like keys masked; known secret values masked wherever they appear."""
    if isinstance(node, dict):
        return {
            key: (
                MASK
                if isinstance(key, str) and SENSITIVE_KEY.search(key) and value not in (None, "")
                else mask_document(value, registry)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [mask_document(item, registry) for item in node]
    if isinstance(node, str):
        return registry.scrub(node)
    return node


def mask_body(raw: str, registry: SecretRegistry) -> str:
    """The body as received when nothing needs masking; otherwise the masked JSON (or text)."""
    try:
        document = json.loads(raw)
    except ValueError:
        return registry.scrub(raw)
    masked = mask_document(document, registry)
    if masked == document:
        return raw
    return json.dumps(masked, indent=2, ensure_ascii=False) + "\n"


async def known_secrets(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], secret_box: SecretBox | None
) -> SecretRegistry:
    registry = SecretRegistry()
    registry.add(*settings.secret_values())
    if secret_box is None:
        return registry
    async with sessionmaker() as session:
        channels = await ChannelRepository(session).list_all()
    for channel in channels:
        try:
            if channel.webhook_secrets_encrypted:
                registry.add(
                    *(
                        s.get_secret_value()
                        for s in secret_box.decrypt_list(channel.webhook_secrets_encrypted)
                    )
                )
            if channel.api_secret_encrypted:
                registry.add(secret_box.decrypt(channel.api_secret_encrypted).get_secret_value())
        except (SecretBoxError, ValueError):
            continue
    return registry


async def capture(
    *,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    secret_box: SecretBox | None,
    last: int,
    out: Path,
) -> list[Path]:
    """Write the newest `last` Nexus webhook bodies to `out`; returns the files written."""
    registry = await known_secrets(settings, sessionmaker, secret_box)
    async with sessionmaker() as session:
        events = await StoredWebhookRepository(session).latest(SOURCE, last)
    return write_fixtures(events, registry, out)


def write_fixtures(events: Sequence[InboxEvent], registry: SecretRegistry, out: Path) -> list[Path]:
    """One file per event (oldest first) plus manifest.json."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    manifest: list[dict[str, Any]] = []
    for event in reversed(events):
        channel_id = (event.payload or {}).get("channelId", "unknown")
        name = _UNSAFE_NAME.sub("_", f"webhook_{event.id:06d}_{channel_id}") + ".json"
        path = out / name
        body = mask_body(event.raw_body or "", registry)
        path.write_text(body, encoding="utf-8")
        written.append(path)
        manifest.append(
            {
                "file": name,
                "inboxEventId": event.id,
                "channelId": registry.scrub(str(channel_id)),
                "receivedAt": event.received_at.isoformat() if event.received_at else None,
                "masked": body != event.raw_body,
            }
        )
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return written
