"""Encryption of stored secrets and constant-time token checks."""

from __future__ import annotations

import base64
import hmac
import json

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

from channel_bridge.ops.logging import secrets as log_secrets


class SecretBoxError(Exception):
    pass


class SecretBox:
    """Fernet (AES-128-CBC + HMAC-SHA256) with a key derived from BRIDGE_SECRET_KEY by HKDF."""

    def __init__(self, secret_key: SecretStr) -> None:
        derived = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=b"channel-bridge/v1",
            info=b"stored-secrets",
        ).derive(secret_key.get_secret_value().encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

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


def tokens_equal(given: str | None, expected: SecretStr | None) -> bool:
    """Constant-time comparison; a missing value never matches."""
    if not given or expected is None or not expected.get_secret_value():
        return False
    return hmac.compare_digest(given.encode(), expected.get_secret_value().encode())
