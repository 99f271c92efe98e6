"""AXP problem+json errors become relay errors of the right class, readable on one line."""

from __future__ import annotations

import email.utils

import httpx
import pytest

from channel_bridge.platforms.axp.errors import (
    AxpApiError,
    error_from_response,
    parse_retry_after,
)
from channel_bridge.relay.errors import AuthError, PermanentError, RetryableError, ThrottledError
from tests.axp.conftest import load_fixture


def problem_response(status: int, body: dict | None = None, **headers: str) -> httpx.Response:
    return httpx.Response(
        status, json=body or {}, headers={"content-type": "application/problem+json", **headers}
    )


def test_constraint_violation_from_the_spec_is_permanent_with_violations() -> None:
    example = load_fixture("custom_messaging_examples.json")["ErrorConstraintViolation"]
    error = error_from_response(problem_response(400, example), operation="send message")
    assert isinstance(error, AxpApiError) and isinstance(error, PermanentError)
    assert error.status == 400 and error.title == "Constraint Violation"
    assert [(v.field, v.message) for v in error.violations] == [
        ("accountId", 'must match "^[a-zA-Z]{6}$"')
    ]
    text = str(error)
    assert "\n" not in text
    assert text.startswith("AXP send message failed: HTTP 400 Constraint Violation: A problem")
    assert text.endswith('[accountId: must match "^[a-zA-Z]{6}$"]')


def test_violation_codes_appear_in_the_message() -> None:
    body = {
        "title": "Constraint Violation",
        "status": 400,
        "violations": [
            {"field": "callbackUrl", "message": "must not be null", "code": 20002},
            {"field": "eventTypes", "message": "size must be between 1 and 6", "code": 20003},
        ],
    }
    error = error_from_response(problem_response(400, body), operation="create subscription")
    assert (
        "callbackUrl: must not be null (20002); eventTypes: size must be between 1 and 6 (20003)"
        in str(error)
    )
    assert error.violations[1].code == 20003


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (500, RetryableError),
        (503, RetryableError),
        (429, ThrottledError),
        (401, AuthError),
        (403, PermanentError),
        (404, PermanentError),
        (409, PermanentError),
    ],
)
def test_status_classification(status: int, cls: type) -> None:
    error = error_from_response(problem_response(status, {"title": "x"}), operation="op")
    assert isinstance(error, cls) and isinstance(error, AxpApiError)


def test_retry_after_seconds_and_http_date() -> None:
    error = error_from_response(
        problem_response(429, {"title": "Too Many Requests"}, **{"Retry-After": "7"}),
        operation="send message",
    )
    assert isinstance(error, ThrottledError) and error.retry_after_s == 7.0
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(30.0)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_a_non_json_error_body_still_classifies() -> None:
    response = httpx.Response(502, text="<html>Bad gateway</html>")
    error = error_from_response(response, operation="list subscriptions")
    assert isinstance(error, RetryableError)
    assert str(error) == "AXP list subscriptions failed: HTTP 502"
    assert error.response_excerpt == "<html>Bad gateway</html>"
