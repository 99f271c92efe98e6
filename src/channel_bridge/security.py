"""Encryption of stored secrets and constant-time token checks."""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

from channel_bridge.ops.logging import secrets as log_secrets
from channel_bridge.settings import split_secret_keys


class SecretBoxError(Exception):
    pass


class SecretBox:
    """Fernet (AES-128-CBC + HMAC-SHA256) with keys derived from BRIDGE_SECRET_KEY by HKDF.

    BRIDGE_SECRET_KEY is one key or a JSON list of keys, newest first (MultiFernet): the
    first encrypts, any of them decrypts, and `rotate` re-encrypts a token under the first.
    A rotation adds the new key in front, runs `channel-bridge secrets rotate`, then drops
    the old key (docs/operations.md).
    """

    def __init__(self, secret_key: SecretStr) -> None:
        try:
            keys = split_secret_keys(secret_key.get_secret_value())
        except ValueError as exc:
            raise SecretBoxError(str(exc)) from None
        if not keys:
            raise SecretBoxError("BRIDGE_SECRET_KEY is empty")
        self.key_count = len(keys)
        self._fernet = MultiFernet([_fernet(key) for key in keys])

    def rotate(self, token: str) -> str:
        """The token re-encrypted under the first key (SecretBoxError if no key reads it)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretBoxError(
                "stored secret cannot be decrypted with any BRIDGE_SECRET_KEY"
            ) from exc

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> SecretStr:
        try:
            plain = self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretBoxError(
                "stored secret cannot be decrypted with BRIDGE_SECRET_KEY"
            ) from exc
        # A decrypted secret may reach a log line through an upstream error: scrub it there too.
        log_secrets.add(plain)
        return SecretStr(plain)

    def encrypt_list(self, values: list[str]) -> str:
        return self.encrypt(json.dumps(values))

    def decrypt_list(self, token: str) -> list[SecretStr]:
        values = json.loads(self.decrypt(token).get_secret_value())
        log_secrets.add(*values)
        return [SecretStr(v) for v in values]


def _fernet(key: str) -> Fernet:
    derived = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"channel-bridge/v1",
        info=b"stored-secrets",
    ).derive(key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def any_token_equal(given: str | None, accepted: Sequence[SecretStr]) -> bool:
    """`given` matches one of `accepted`; every one is compared (constant time overall)."""
    matches = [tokens_equal(given, token) for token in accepted]
    return any(matches)


def tokens_equal(given: str | None, expected: SecretStr | None) -> bool:
    """Constant-time comparison; a missing value never matches."""
    if not given or expected is None or not expected.get_secret_value():
        return False
    return hmac.compare_digest(given.encode(), expected.get_secret_value().encode())
