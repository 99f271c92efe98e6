"""Password digests for `Authenticate`.

Akixi hashes the password with the session's Nonce, but the algorithm is not public
(docs/akixi-contract.md §2). The scheme is therefore a setting, `BRIDGE_AKIXI_PASSWORD_SCHEME`;
the default `sha256-nonce` (lower-case hex SHA-256 of nonce + password, both UTF-8) is our
choice, not Akixi's documented rule. Confirm it with Akixi before going live.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

PasswordScheme = Callable[[str, str], str]


def _nonce_digest(algorithm: str) -> PasswordScheme:
    def digest(nonce: str, password: str) -> str:
        return hashlib.new(algorithm, (nonce + password).encode("utf-8")).hexdigest()

    return digest


def _plain(_nonce: str, password: str) -> str:
    return password


SCHEMES: dict[str, PasswordScheme] = {
    "sha256-nonce": _nonce_digest("sha256"),
    "sha1-nonce": _nonce_digest("sha1"),
    "md5-nonce": _nonce_digest("md5"),
    # Only for an Akixi test service that takes the password as is (still inside TLS).
    "plain": _plain,
}


def password_digest(scheme: str, *, nonce: str, password: str) -> str:
    """The value sent as the Authenticate password for this scheme and session nonce."""
    try:
        return SCHEMES[scheme](nonce, password)
    except KeyError:
        known = sorted(SCHEMES)
        raise ValueError(f"unknown Akixi password scheme {scheme!r}; one of {known}") from None
