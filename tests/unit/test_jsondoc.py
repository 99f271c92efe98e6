"""jsondoc.why_unstorable_body: the answer of the full walk, whatever the body."""

from __future__ import annotations

import json

import pytest

from channel_bridge import jsondoc
from tests.axp.conftest import callback_examples


def nested(depth: int, leaf: str = '"x"') -> bytes:
    return ("[" * depth + leaf + "]" * depth).encode()


BODIES = [
    *(json.dumps(example).encode() for example in callback_examples().values()),
    b'{"text": "nul \\u0000 here"}',
    b'{"text": "lone \\ud800 surrogate"}',
    b'{"text": "pair \\ud83d\\ude00 is fine"}',
    b'{"text": "raw surrogate \xed\xa0\x80"}',
    b'{"text": "hangul \xed\x95\x9c is fine"}',
    b'{"text": "a literal backslash-u \\\\u0000"}',
    '{"text": "utf-16 \\u0000"}'.encode("utf-16"),
    b'{"text": "brackets [[[{{{ in a string"}',
    *(nested(depth) for depth in (30, 31, 32, 33, 40)),
    *(nested(depth, '{"k": "\\u0000"}') for depth in (2, 31, 33)),
]


@pytest.mark.parametrize("raw", BODIES)
def test_the_same_answer_as_the_walk(raw: bytes) -> None:
    document = jsondoc.parse(raw)
    assert jsondoc.why_unstorable_body(raw, document) == jsondoc.why_unstorable(document)


def test_the_cases_above_include_every_problem() -> None:
    answers = {jsondoc.why_unstorable(jsondoc.parse(raw)) for raw in BODIES}
    assert answers == {
        None,
        "contains a NUL character",
        "contains an unpaired UTF-16 surrogate",
        "nested deeper than 32 levels",
    }
