"""X-Hub-Signature: sha1=HMAC-SHA1 over the exact bytes, hex or base64, several secrets."""

from __future__ import annotations

import base64
import hashlib
import hmac

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from channel_bridge.platforms.nexus.signing import SignatureMatch, sign, verify

secrets_st = st.text(min_size=1, max_size=64)
encodings = st.sampled_from(["hex", "base64"])


def test_sign_is_hmac_sha1_of_the_body() -> None:
    body = b'{"text":"hello"}'
    mac = hmac.new(b"s3cret", body, hashlib.sha1).digest()
    assert sign(body, "s3cret") == "sha1=" + mac.hex()
    assert sign(body, "s3cret", "base64") == "sha1=" + base64.b64encode(mac).decode()
    # A known vector (RFC 2202 test case 2) pins the algorithm itself.
    assert (
        sign(b"what do ya want for nothing?", "Jefe")
        == "sha1=effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
    )


@given(body=st.binary(max_size=2048), secret=secrets_st, encoding=encodings)
@settings(max_examples=200)
def test_round_trip(body: bytes, secret: str, encoding: str) -> None:
    assert verify(body, sign(body, secret, encoding), [secret], encoding) == SignatureMatch(
        0, encoding
    )


@given(
    body=st.binary(min_size=1, max_size=512), secret=secrets_st, encoding=encodings, data=st.data()
)
@settings(max_examples=200)
def test_any_single_bit_flip_in_body_fails(body: bytes, secret: str, encoding: str, data) -> None:
    header = sign(body, secret, encoding)
    bit = data.draw(st.integers(0, len(body) * 8 - 1))
    flipped = bytearray(body)
    flipped[bit // 8] ^= 1 << (bit % 8)
    assert verify(bytes(flipped), header, [secret], encoding) is None
    assert verify(bytes(flipped), header, [secret], "auto") is None


@given(body=st.binary(max_size=512), secret=secrets_st, encoding=encodings, data=st.data())
@settings(max_examples=200)
def test_any_single_bit_flip_in_signature_fails(
    body: bytes, secret: str, encoding: str, data
) -> None:
    header = sign(body, secret, encoding).encode("ascii")
    bit = data.draw(st.integers(0, len(header) * 8 - 1))
    flipped = bytearray(header)
    flipped[bit // 8] ^= 1 << (bit % 8)
    altered = bytes(flipped).decode("latin-1")
    # A flip of the case bit in the label or in a hex letter spells the same signature.
    assume(not same_signature_in_another_case(altered, header.decode("ascii"), encoding))
    assert verify(body, altered, [secret], encoding) is None
    assert verify(body, altered, [secret], "auto") is None


def same_signature_in_another_case(altered: str, header: str, encoding: str) -> bool:
    label, digest_part = altered[:5], altered[5:]
    if label.lower() != "sha1=":
        return False
    if encoding == "hex":
        return digest_part.lower() == header[5:]
    return digest_part == header[5:]


@given(body=st.binary(max_size=512), secret=secrets_st, data=st.data())
@settings(max_examples=200)
def test_hex_digits_and_label_match_in_any_case(body: bytes, secret: str, data) -> None:
    header = sign(body, secret, "hex")
    cased = "".join(char.upper() if data.draw(st.booleans()) else char for char in header)
    assert verify(body, cased, [secret], "hex") == SignatureMatch(0, "hex")
    assert verify(body, cased, [secret], "auto") == SignatureMatch(0, "hex")


def test_base64_stays_case_sensitive() -> None:
    body = b'{"id":"m1"}'
    header = sign(body, "k", "base64")
    swapped = header[:5] + header[5:].swapcase()
    assert header[5:] != header[5:].swapcase()
    assert verify(body, swapped, ["k"], "base64") is None
    assert verify(body, "SHA1=" + header[5:], ["k"], "base64") == SignatureMatch(0, "base64")


def test_rotation_accepts_old_and_new_and_reports_which() -> None:
    body = b'{"id":"m1"}'
    assert verify(body, sign(body, "new-secret"), ["new-secret", "old-secret"]) == SignatureMatch(
        0, "hex"
    )
    assert verify(body, sign(body, "old-secret"), ["new-secret", "old-secret"]) == SignatureMatch(
        1, "hex"
    )
    assert verify(body, sign(body, "gone-secret"), ["new-secret", "old-secret"]) is None


def test_encoding_setting_is_enforced_and_auto_accepts_both() -> None:
    body = b"{}"
    hex_header, b64_header = sign(body, "k", "hex"), sign(body, "k", "base64")
    assert verify(body, hex_header, ["k"], "hex")
    assert verify(body, b64_header, ["k"], "hex") is None
    assert verify(body, b64_header, ["k"], "base64")
    assert verify(body, hex_header, ["k"], "base64") is None
    assert verify(body, hex_header, ["k"], "auto") == SignatureMatch(0, "hex")
    assert verify(body, b64_header, ["k"], "auto") == SignatureMatch(0, "base64")


def test_malformed_headers_and_missing_secrets_never_match() -> None:
    body = b"{}"
    good = sign(body, "k")
    for header in (
        None,
        "",
        good[len("sha1=") :],
        "sha256=" + good[5:],
        good + " ",
        "sha1=" + "é" * 40,
    ):
        assert verify(body, header, ["k"]) is None
    assert verify(body, good, []) is None
    assert verify(body, sign(body, ""), [""]) is None
