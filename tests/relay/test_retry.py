"""The retry schedule as a pure function of the error and the attempt number."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from channel_bridge.relay.errors import (
    AuthError,
    PermanentError,
    RetryableError,
    ThrottledError,
    classify_status,
    parse_retry_after,
)
from channel_bridge.relay.retry import RetryPolicy
from channel_bridge.settings import Settings

NOW = datetime(2026, 11, 24, 9, 0, 0, tzinfo=UTC)


def _policy(**overrides) -> RetryPolicy:
    return RetryPolicy(Settings(**{"retry_jitter": 0.0, **overrides}), rng=random.Random(1))


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (408, RetryableError),
        (425, RetryableError),
        (429, ThrottledError),
        (500, RetryableError),
        (502, RetryableError),
        (504, RetryableError),
        (599, RetryableError),
        (401, AuthError),
        (400, PermanentError),
        (403, PermanentError),
        (404, PermanentError),
        (422, PermanentError),
    ],
)
def test_classify_status(status, cls) -> None:
    assert classify_status(status) is cls


def test_default_schedule_is_about_sixteen_hours() -> None:
    policy = _policy()
    delays = [policy.decide(RetryableError("x"), attempt_number=n).delay_s for n in range(1, 10)]
    assert delays == [5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800]
    assert 15.5 * 3600 < sum(delays) < 16.5 * 3600
    assert policy.decide(RetryableError("x"), attempt_number=10).outcome == "dead"


def test_jitter_stays_within_twenty_percent() -> None:
    policy = RetryPolicy(Settings(), rng=random.Random(7))
    delays = {policy.scheduled_delay(2) for _ in range(200)}
    assert min(delays) >= 24 and max(delays) <= 36
    assert len(delays) > 100


def test_throttled_waits_at_least_a_minute() -> None:
    assert _policy().decide(ThrottledError("429"), attempt_number=1).delay_s == 60


@pytest.mark.parametrize(("retry_after", "expected"), [(7, 60), (90, 90), (500, 120)])
def test_retry_after_is_clamped_to_scheduled_and_twice_it(retry_after, expected) -> None:
    error = ThrottledError("429", http_status=429, retry_after_s=retry_after)
    assert _policy().decide(error, attempt_number=1).delay_s == expected


def test_retry_after_inside_the_window_is_used_as_is() -> None:
    policy = _policy(retry_throttled_min_s=5)
    assert policy.decide(ThrottledError("429", retry_after_s=7), attempt_number=1).delay_s == 7


def test_parse_retry_after() -> None:
    assert parse_retry_after("7", now=NOW) == 7
    assert parse_retry_after("Tue, 24 Nov 2026 09:02:00 GMT", now=NOW) == 120
    assert parse_retry_after("Tue, 24 Nov 2026 08:00:00 GMT", now=NOW) == 0
    assert parse_retry_after("soon", now=NOW) is None
    assert parse_retry_after(None, now=NOW) is None


def test_permanent_and_auth_are_dead() -> None:
    policy = _policy()
    assert policy.decide(PermanentError("bad", http_status=400), attempt_number=1).outcome == "dead"
    assert policy.decide(AuthError("401", http_status=401), attempt_number=2).outcome == "dead"
