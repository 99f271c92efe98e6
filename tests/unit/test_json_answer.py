"""webhooks.json_answer: the same bytes and headers as the JSONResponse it replaces."""

from __future__ import annotations

import pytest
from fastapi.responses import JSONResponse

from channel_bridge.webhooks import json_answer


@pytest.mark.parametrize(
    "content",
    [
        {"status": "accepted"},
        {"messageId": "nx-0123", "messageIds": ["nx-0123", "nx-4567"]},
        {"messageId": 'é \u2028 \x01 " \\ / \U0001f600'},
        {"messageId": "\ud800"},  # orjson refuses it: JSONResponse answers
    ],
)
def test_the_bytes_and_headers_of_a_json_response(content) -> None:
    headers = {"X-B3-TraceId": "0123456789abcdef"}
    try:
        expected = JSONResponse(content, headers=headers)
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            json_answer(content, headers)
        return
    answer = json_answer(content, headers)
    assert (answer.status_code, answer.raw_headers, answer.body) == (
        expected.status_code,
        expected.raw_headers,
        expected.body,
    )
