"""Password digests for `Authenticate`.

Akixi hashes the password with the session's Nonce, but the algorithm is not public
(docs/akixi-contract.md §3). Every part of it is therefore a setting: the hash
(`BRIDGE_AKIXI_PASSWORD_SCHEME`), what is hashed (`BRIDGE_AKIXI_PASSWORD_DIGEST_INPUT`, a
template of {nonce}, {password} and {user}) and how the digest is written
(`BRIDGE_AKIXI_PASSWORD_DIGEST_ENCODING`). The defaults (lower-case hex SHA-256 of nonce +
password, UTF-8) are our choice, not Akixi's documented rule. Confirm them with Akixi.
"""

from __future__ import annotations

import base64
import hashlib

DEFAULT_DIGEST_INPUT = "{nonce}{password}"

# Scheme -> hashlib algorithm; `plain` sends the password itself.
SCHEMES: dict[str, str | None] = {
    "sha256-nonce": "sha256",
    "sha1-nonce": "sha1",
    "md5-nonce": "md5",
    # Only for an Akixi test service that takes the password as is (still inside TLS).
    "plain": None,
}
ENCODINGS = ("hex", "hex-upper", "base64")


def password_digest(
    scheme: str,
    *,
    nonce: str,
    password: str,
    user: str = "",
    digest_input: str = DEFAULT_DIGEST_INPUT,
    encoding: str = "hex",
) -> str:
    """The value sent as the Authenticate password for this scheme and session nonce."""
    if scheme not in SCHEMES:
        known = sorted(SCHEMES)
        raise ValueError(f"unknown Akixi password scheme {scheme!r}; one of {known}")
    algorithm = SCHEMES[scheme]
    if algorithm is None:
        return password
    text = digest_input.format(nonce=nonce, password=password, user=user)
    digest = hashlib.new(algorithm, text.encode("utf-8")).digest()
    if encoding == "hex":
        return digest.hex()
    if encoding == "hex-upper":
        return digest.hex().upper()
    if encoding == "base64":
        return base64.b64encode(digest).decode("ascii")
    raise ValueError(f"unknown digest encoding {encoding!r}; one of {list(ENCODINGS)}")
