"""X-Hub-Signature-256: `sha256=` + base64 HMAC-SHA256 of the webhook body (read, Genesys
Cloud "Validate webhook notifications").

The published sample hashes `JSON.stringify` of the parsed body, which for a JSON body that
Genesys serialised compactly is the raw body; we verify the exact bytes received, as every
other signature in the bridge does, and never re-serialise.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from pydantic import SecretStr

SIGNATURE_HEADER = "X-Hub-Signature-256"
PREFIX = "sha256="


def _secret_bytes(secret: str | SecretStr) -> bytes:
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    return value.encode("utf-8")


def sign(body: bytes, secret: str | SecretStr) -> str:
    """The X-Hub-Signature-256 value for `body`."""
    mac = hmac.new(_secret_bytes(secret), body, hashlib.sha256).digest()
    return PREFIX + base64.b64encode(mac).decode("ascii")


def verify(body: bytes, header: str | None, secrets: Sequence[str | SecretStr]) -> int | None:
    """The index of the secret that signed `body`, else None (constant time over all secrets)."""
    if not header or header[: len(PREFIX)].lower() != PREFIX or not secrets:
        return None
    try:
        given = header.encode("ascii")
    except UnicodeEncodeError:
        return None
    given = PREFIX.encode("ascii") + given[len(PREFIX) :]
    match: int | None = None
    for index, secret in enumerate(secrets):
        if not _secret_bytes(secret):
            continue
        expected = sign(body, secret).encode("ascii")
        if hmac.compare_digest(given, expected) and match is None:
            match = index
    return match
