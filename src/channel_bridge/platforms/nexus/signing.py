"""X-Hub-Signature: `sha1=` + HMAC-SHA1 over the exact body bytes (read, Nexus docs).

The digest encoding is not published: `hex` follows the X-Hub-Signature convention,
`base64` is what Genesys Cloud uses for its sibling header, and `auto` accepts either
during bring-up and reports which one matched.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr

SIGNATURE_HEADER = "X-Hub-Signature"
PREFIX = "sha1="

Encoding = Literal["hex", "base64"]
EncodingSetting = Literal["hex", "base64", "auto"]


def _secret_bytes(secret: str | SecretStr) -> bytes:
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    return value.encode("utf-8")


def digest(body: bytes, secret: str | SecretStr, encoding: Encoding = "hex") -> str:
    return _encoded(hmac.new(_secret_bytes(secret), body, hashlib.sha1).digest(), encoding)


def _encoded(mac: bytes, encoding: Encoding) -> str:
    if encoding == "base64":
        return base64.b64encode(mac).decode("ascii")
    return mac.hex()


def sign(body: bytes, secret: str | SecretStr, encoding: Encoding = "hex") -> str:
    """The X-Hub-Signature value for `body`."""
    return PREFIX + digest(body, secret, encoding)


def sign_chunks(
    chunks: Iterable[bytes], secret: str | SecretStr, encoding: Encoding = "hex"
) -> str:
    """The X-Hub-Signature value for the body made of `chunks` (never joined in memory)."""
    mac = hmac.new(_secret_bytes(secret), digestmod=hashlib.sha1)
    for chunk in chunks:
        mac.update(chunk)
    return PREFIX + _encoded(mac.digest(), encoding)


@dataclass(frozen=True, slots=True)
class SignatureMatch:
    """Which secret (index into the list given) and which encoding verified the body."""

    secret_index: int
    encoding: Encoding


def verify(
    body: bytes,
    header: str | None,
    secrets: Sequence[str | SecretStr],
    encoding: EncodingSetting = "hex",
) -> SignatureMatch | None:
    """The match if `header` signs `body` with one of `secrets`, else None (constant time).

    Hex case is not specified anywhere, so hex digits (and the `sha1=` label) match in either
    case; base64 is case-sensitive by nature and compared exactly.
    """
    if not header or header[: len(PREFIX)].lower() != PREFIX or not secrets:
        return None
    try:
        given = header[len(PREFIX) :].encode("ascii")
    except UnicodeEncodeError:
        return None
    # Lower-casing is a pass over every byte whatever it holds: no early exit to time.
    given_hex = given.lower()
    encodings: tuple[Encoding, ...] = ("hex", "base64") if encoding == "auto" else (encoding,)
    match: SignatureMatch | None = None
    # Every candidate is compared, so timing does not reveal which secret or encoding matched.
    for index, secret in enumerate(secrets):
        if not _secret_bytes(secret):
            continue
        for candidate_encoding in encodings:
            expected = digest(body, secret, candidate_encoding).encode("ascii")
            candidate = given_hex if candidate_encoding == "hex" else given
            if hmac.compare_digest(candidate, expected) and match is None:
                match = SignatureMatch(index, candidate_encoding)
    return match
