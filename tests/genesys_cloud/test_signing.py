"""X-Hub-Signature-256: `sha256=` + base64 HMAC-SHA256 of the exact body bytes."""

from __future__ import annotations

import base64
import hashlib
import hmac

from pydantic import SecretStr

from channel_bridge.platforms.genesys_cloud.signing import sign, verify

BODY = b'{"id":"m-1","type":"Text","text":"hi"}'
SECRET = "MySecretSignature-0001"


def test_sign_is_base64_hmac_sha256_with_the_prefix() -> None:
    expected = base64.b64encode(hmac.new(SECRET.encode(), BODY, hashlib.sha256).digest()).decode()
    assert sign(BODY, SECRET) == "sha256=" + expected
    assert sign(BODY, SecretStr(SECRET)) == sign(BODY, SECRET)


def test_verify_names_the_secret_that_matched() -> None:
    header = sign(BODY, SECRET)
    assert verify(BODY, header, [SECRET]) == 0
    assert verify(BODY, header, ["a-newer-secret-0000", SecretStr(SECRET)]) == 1
    # The label's case is not part of the digest.
    assert verify(BODY, "SHA256=" + header.removeprefix("sha256="), [SECRET]) == 0


def test_verify_refuses_what_does_not_match() -> None:
    header = sign(BODY, SECRET)
    assert verify(BODY + b" ", header, [SECRET]) is None
    assert verify(BODY, header, ["another-secret-0000"]) is None
    assert verify(BODY, None, [SECRET]) is None
    assert verify(BODY, header, []) is None
    assert verify(BODY, "sha1=" + header.removeprefix("sha256="), [SECRET]) is None
    # Base64 is case-sensitive: a hex digest or a changed case is not the signature.
    assert verify(BODY, header.swapcase(), [SECRET]) is None
    hex_digest = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert verify(BODY, "sha256=" + hex_digest, [SECRET]) is None
    assert verify(BODY, "sha256=é", [SECRET]) is None
