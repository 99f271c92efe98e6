"""The console's login session, CSRF tokens and one-shot notices: signed cookies, no table.

A session cookie is `<expires>.<nonce>.<mac>`, HMAC-SHA256 under a key derived from
BRIDGE_ADMIN_TOKEN: only someone who knew the token can hold one, and changing the token ends
every session at once. A session's CSRF token is the MAC of its nonce under a second derived
key; every form carries it and every POST is refused (403) without it. The login form gets
the same protection from a short-lived `login` cookie holding a nonce of its own.

The cookies are HttpOnly and SameSite=Strict, scoped to /admin/ui, and Secure when the
public base URL is https.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr
from starlette.responses import Response

PATH = "/admin/ui"
SESSION_COOKIE = "bridge_console"
LOGIN_COOKIE = "bridge_console_login"
NOTICE_COOKIE = "bridge_console_notice"
CSRF_FIELD = "csrf_token"
# Long enough to type a token in, short enough that a stale login page is refused.
LOGIN_FORM_TTL_S = 900
# A notice lives from one POST to the page it redirects to.
NOTICE_TTL_S = 60


def _derive(secret: str, info: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"channel-bridge/console", info=info
    ).derive(secret.encode())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    nonce: str
    expires_at: int
    csrf_token: str


class ConsoleCookies:
    """Issues and checks the console's cookies for one admin token."""

    def __init__(self, admin_token: SecretStr | None, *, ttl_s: float, secure: bool) -> None:
        token = admin_token.get_secret_value() if admin_token is not None else ""
        # No token configured: no key, so nothing ever verifies.
        self._session_key = _derive(token, b"session") if token else None
        self._csrf_key = _derive(token, b"csrf") if token else None
        self.ttl_s = int(ttl_s)
        self.secure = secure

    def _mac(self, key: bytes | None, text: str) -> str:
        if key is None:
            return ""
        return _b64(hmac.new(key, text.encode(), hashlib.sha256).digest())

    def _valid(self, key: bytes | None, text: str, mac: str) -> bool:
        return key is not None and bool(mac) and hmac.compare_digest(self._mac(key, text), mac)

    # --- session --------------------------------------------------------------------

    def new_session(self, *, now: datetime) -> str:
        expires = int(now.timestamp()) + self.ttl_s
        body = f"{expires}.{secrets.token_urlsafe(18)}"
        return f"{body}.{self._mac(self._session_key, body)}"

    def read_session(self, value: str | None, *, now: datetime) -> ConsoleSession | None:
        """The session this cookie value proves, or None (missing, forged or expired)."""
        if not value or value.count(".") != 2:
            return None
        expires, nonce, mac = value.split(".")
        if not self._valid(self._session_key, f"{expires}.{nonce}", mac):
            return None
        if not expires.isdigit() or int(expires) <= now.timestamp():
            return None
        return ConsoleSession(nonce, int(expires), self._mac(self._csrf_key, f"csrf:{nonce}"))

    def csrf_valid(self, session: ConsoleSession, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(session.csrf_token, given or "")

    # --- login form -----------------------------------------------------------------

    def new_login_nonce(self) -> str:
        return secrets.token_urlsafe(18)

    def login_csrf(self, nonce: str) -> str:
        return self._mac(self._csrf_key, f"login:{nonce}")

    def login_csrf_valid(self, nonce: str | None, given: str | None) -> bool:
        return bool(nonce and given) and self._valid(self._csrf_key, f"login:{nonce}", given or "")

    # --- notices (one-shot messages after a POST) -----------------------------------

    def sign_notice(self, messages: list[dict[str, str]], *, now: datetime) -> str:
        body = _b64(json.dumps({"m": messages, "t": int(now.timestamp())}).encode())
        return f"{body}.{self._mac(self._session_key, 'notice:' + body)}"

    def read_notice(self, value: str | None, *, now: datetime) -> list[dict[str, str]]:
        if not value or value.count(".") != 1:
            return []
        body, mac = value.split(".")
        if not self._valid(self._session_key, "notice:" + body, mac):
            return []
        try:
            data: Any = json.loads(_unb64(body))
            if now.timestamp() - int(data["t"]) > NOTICE_TTL_S:
                return []
            return [{"level": str(m["level"]), "text": str(m["text"])} for m in data["m"]]
        except (ValueError, KeyError, TypeError):
            return []

    # --- setting cookies ------------------------------------------------------------

    def set(self, response: Response, name: str, value: str, *, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=PATH,
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )

    def clear(self, response: Response, name: str) -> None:
        response.delete_cookie(
            name, path=PATH, secure=self.secure, httponly=True, samesite="strict"
        )
