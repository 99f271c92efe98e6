"""JSON documents as the bridge stores them: what cannot be stored, and a fast serialiser."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# Real messages and callbacks are a few levels deep; this bounds the work spent on a hostile body.
MAX_JSON_DEPTH = 32
# An escaped lone surrogate ("\ud800") is valid JSON but no UTF-8 text, so no jsonb, holds it.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def why_unstorable(document: Any, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why a parsed body cannot be stored as is (NUL, lone surrogates, absurd nesting), or None.

    PostgreSQL text and jsonb refuse NUL and unpaired surrogates, and deep nesting breaks
    serialisers: the caller answers 422 naming the reason instead of failing in the database.
    """
    stack = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            return f"nested deeper than {max_depth} levels"
        if isinstance(node, str):
            if "\x00" in node:
                return "contains a NUL character"
            if _LONE_SURROGATE.search(node):
                return "contains an unpaired UTF-16 surrogate"
        elif isinstance(node, dict):
            stack.extend((key, depth + 1) for key in node)
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)
    return None


# UTF-8 of U+D800..U+DFFF: json.loads decodes bytes with "surrogatepass", so these survive.
_RAW_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")


def why_unstorable_body(raw: bytes, document: Any, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """`why_unstorable(document)` for a document parsed from `raw`, without the walk where the
    bytes already show it would find nothing (the usual webhook body).

    A parsed string holds a NUL or a lone surrogate only through a `\\u` escape or, for a
    surrogate, its raw UTF-8 bytes: JSON allows no raw control characters. A body without NUL
    bytes is no UTF-16/32 text, where those would be spelled differently. And no node is
    deeper than one level below the number of brackets in the body.
    """
    if (
        b"\x00" not in raw
        and b"\\u" not in raw
        and raw.count(b"{") + raw.count(b"[") < max_depth
        and _RAW_SURROGATE.search(raw) is None
    ):
        return None
    return why_unstorable(document, max_depth)


def dumps(value: Any) -> str:
    """Serialise for a JSON column: orjson, with the standard library for what orjson refuses.

    orjson is several times faster than `json`, and JSON encoding was the largest share of the
    inbox write; it refuses integers beyond 64 bits, which `json` (and jsonb) accept.
    """
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def parse(raw: bytes, **json_options: Any) -> Any:
    """Parse a request body: orjson where it can, else the standard library's answer.

    orjson is about three times faster; where it refuses a body (lone surrogates, integers
    beyond 64 bits, NaN, other encodings, deep nesting) `json.loads(raw, **json_options)`
    decides, so what is accepted, and every error raised, stays the standard library's.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw, **json_options)


def loads(text: str | bytes) -> Any:
    """Parse a JSON column (the counterpart of `dumps`, so anything stored reads back)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
