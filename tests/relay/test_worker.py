"""The worker delivers, retries on schedule, honours Retry-After, gives up into dead letters."""

from __future__ import annotations

from datetime import timedelta

from channel_bridge.relay.envelope import DeliveryRequest
from channel_bridge.relay.errors import (
    AuthError,
    PermanentError,
    RetryableError,
    ThrottledError,
    classify_status,
)
from tests.relay.conftest import drain, load_attempts, load_delivery


def _http_error(status: int, **kwargs):
    return classify_status(status)(f"upstream answered {status}", http_status=status, **kwargs)


async def _accept_one(inbox, partition_key=None, payload=None):
    acceptance = await inbox.accept(
        source="test",
        external_id="evt-1",
        payload={},
        deliveries=[DeliveryRequest("test.sink", payload or {"text": "hi"}, partition_key)],
    )
    (delivery_id,) = acceptance.delivery_ids
    return delivery_id


async def test_delivers_and_stores_result(inbox, worker, sink, sessionmaker, clock) -> None:
    delivery_id = await _accept_one(inbox, payload={"text": "hello"})
    assert await worker.run_once() == 1
    (call,) = sink.calls
    assert call.payload == {"text": "hello"}
    assert call.idempotency_key == f"dlv-{delivery_id}"
    assert call.attempt_number == 1
    delivery = await load_delivery(sessionmaker, delivery_id)
    assert delivery.status == "delivered"
    assert delivery.result == {"remoteId": f"r-{delivery_id}"}
    assert delivery.locked_by is None and delivery.locked_until is None
    assert delivery.delivered_at == clock.now()
    (attempt,) = await load_attempts(sessionmaker, delivery_id)
    assert (attempt.number, attempt.outcome, attempt.worker_id) == (1, "delivered", "w-test")
    assert await worker.run_once() == 0


async def test_two_5xx_then_success_takes_three_attempts(
    inbox, worker, sink, sessionmaker, clock
) -> None:
    answers = iter([_http_error(500), _http_error(503), None])
    sink.script = lambda ctx: next(answers)
    delivery_id = await _accept_one(inbox)

    assert await worker.run_once() == 1
    delivery = await load_delivery(sessionmaker, delivery_id)
    assert delivery.status == "pending"
    # First delay of the default schedule, no jitter in these settings.
    assert delivery.next_attempt_at == clock.now() + timedelta(seconds=5)
    assert delivery.last_error == "HTTP 500: upstream answered 500"

    assert await worker.run_once() == 0  # not due yet
    clock.advance(5)
    assert await worker.run_once() == 1
    delivery = await load_delivery(sessionmaker, delivery_id)
    assert delivery.next_attempt_at == clock.now() + timedelta(seconds=30)
    clock.advance(30)
    assert await worker.run_once() == 1

    delivery = await load_delivery(sessionmaker, delivery_id)
    assert delivery.status == "delivered"
    assert delivery.attempt_count == 3
    attempts = await load_attempts(sessionmaker, delivery_id)
    assert [(a.number, a.outcome, a.http_status, a.error_class) for a in attempts] == [
        (1, "retry", 500, "retryable"),
        (2, "retry", 503, "retryable"),
        (3, "delivered", None, None),
    ]
    assert [c.idempotency_key for c in sink.calls] == [f"dlv-{delivery_id}"] * 3


async def test_retry_after_on_429_sets_next_attempt_exactly(
    database_url, sessionmaker, registry, sink, clock
) -> None:
    from channel_bridge.relay.inbox import Inbox
    from channel_bridge.relay.worker import RelayWorker
    from tests.conftest import make_settings

    # Throttling floor at the first scheduled delay, so Retry-After 7 falls inside [5, 10].
    settings = make_settings(database_url, retry_jitter=0.0, retry_throttled_min_s=5.0)
    worker = RelayWorker(sessionmaker, registry, settings, clock=clock, worker_id="w-429")
    answers = iter(
        [_http_error(429, retry_after_s=7, response_excerpt='{"error":"slow down"}'), None]
    )
    sink.script = lambda ctx: next(answers)
    delivery_id = await _accept_one(Inbox(sessionmaker, clock=clock))

    await worker.run_once()
    delivery = await load_delivery(sessionmaker, delivery_id)
    assert delivery.status == "pending"
    assert delivery.next_attempt_at == clock.now() + timedelta(seconds=7)
    clock.advance(6.999)
    assert await worker.run_once() == 0
    clock.advance(0.001)
    assert await worker.run_once() == 1
    attempts = await load_attempts(sessionmaker, delivery_id)
    assert attempts[0].error_class == "throttled"
    assert attempts[0].response_excerpt == '{"error":"slow down"}'
    assert (await load_delivery(sessionmaker, delivery_id)).status == "delivered"


async def test_429_without_retry_after_waits_the_throttled_minimum(
    inbox, worker, sink, sessionmaker, clock
) -> None:
    answers = iter([ThrottledError("timed out")])
    sink.script = lambda ctx: next(answers)
    delivery_id = await _accept_one(inbox)
    await worker.run_once()
    delivery = await load_delivery(sessionmaker, delivery_id)
    assert delivery.next_attempt_at == clock.now() + timedelta(seconds=60)


async def test_400_goes_dead_at_once(inbox, worker, sink, sessionmaker, clock) -> None:
    sink.script = lambda ctx: _http_error(400, response_excerpt="bad field: text")
    delivery_id = await _accept_one(inbox)
    await worker.run_once()
    clock.advance(10**6)
    assert await worker.run_once() == 0
    delivery = await load_delivery(sessionmaker, delivery_id)
    assert delivery.status == "dead"
    assert delivery.last_error == "permanent error: HTTP 400: upstream answered 400"
    (attempt,) = await load_attempts(sessionmaker, delivery_id)
    assert (attempt.outcome, attempt.error_class, attempt.http_status) == ("dead", "permanent", 400)
    assert len(sink.calls) == 1


async def test_auth_error_is_retried_once_immediately_then_dead(
    inbox, worker, sink, sessionmaker
) -> None:
    sink.script = lambda ctx: AuthError("token rejected", http_status=401)
    delivery_id = await _accept_one(inbox)
    assert await worker.run_once() == 1
    assert [c.attempt_number for c in sink.calls] == [1, 2]
    delivery = await load_delivery(sessionmaker, delivery_id)
    assert delivery.status == "dead"
    assert delivery.attempt_count == 2
    attempts = await load_attempts(sessionmaker, delivery_id)
    assert [a.outcome for a in attempts] == ["auth_retry", "dead"]


async def test_auth_error_then_success_is_delivered(inbox, worker, sink, sessionmaker) -> None:
    answers = iter([AuthError("expired", http_status=401), {"ok": True}])
    sink.script = lambda ctx: next(answers)
    delivery_id = await _accept_one(inbox)
    await worker.run_once()
    delivery = await load_delivery(sessionmaker, delivery_id)
    assert (delivery.status, delivery.result, delivery.attempt_count) == (
        "delivered",
        {"ok": True},
        2,
    )


async def test_exhaustion_goes_dead_after_the_whole_schedule(
    inbox, worker, sink, sessionmaker, clock, relay_settings
) -> None:
    sink.script = lambda ctx: RetryableError("connect failed")
    delivery_id = await _accept_one(inbox)
    for delay in relay_settings.retry_schedule_s:
        assert await worker.run_once() == 1
        delivery = await load_delivery(sessionmaker, delivery_id)
        assert delivery.status == "pending"
        assert delivery.next_attempt_at == clock.now() + timedelta(seconds=delay)
        clock.advance(delay)
    assert await worker.run_once() == 1
    delivery = await load_delivery(sessionmaker, delivery_id)
    assert delivery.status == "dead"
    assert delivery.last_error == "gave up after 10 attempts: connect failed"
    assert len(await load_attempts(sessionmaker, delivery_id)) == 10
    assert await drain(worker, clock) == 0
    assert len(sink.calls) == 10


async def test_unclassified_exception_is_retried(inbox, worker, sink, sessionmaker, clock) -> None:
    answers = iter([ValueError("bug in a handler"), None])
    sink.script = lambda ctx: next(answers)
    delivery_id = await _accept_one(inbox)
    await worker.run_once()
    (attempt,) = await load_attempts(sessionmaker, delivery_id)
    assert (attempt.outcome, attempt.error_class) == ("retry", "ValueError")
    clock.advance(5)
    await worker.run_once()
    assert (await load_delivery(sessionmaker, delivery_id)).status == "delivered"


async def test_unregistered_destination_is_left_alone(inbox, worker, sink, sessionmaker) -> None:
    acceptance = await inbox.accept(
        source="test", external_id="x", payload={}, deliveries=[DeliveryRequest("other.place", {})]
    )
    assert await worker.run_once() == 0
    assert (await load_delivery(sessionmaker, acceptance.delivery_ids[0])).status == "pending"


async def test_secrets_are_masked_in_attempt_excerpts(inbox, worker, sink, sessionmaker) -> None:
    from channel_bridge.ops.logging import secrets

    secrets.add("sk-live-abcdef123456")
    sink.script = lambda ctx: PermanentError(
        "rejected", http_status=422, response_excerpt="echo: sk-live-abcdef123456 " + "x" * 5000
    )
    delivery_id = await _accept_one(inbox)
    await worker.run_once()
    (attempt,) = await load_attempts(sessionmaker, delivery_id)
    assert "sk-live-abcdef123456" not in attempt.response_excerpt
    assert attempt.response_excerpt.startswith("echo: ***")
    assert len(attempt.response_excerpt) == 2048


async def test_each_failed_attempt_is_logged_not_only_the_dead_letter(
    inbox, worker, sink, sessionmaker, clock
) -> None:
    from structlog.testing import capture_logs

    sink.script = lambda ctx: _http_error(503)
    delivery_id = await _accept_one(inbox)
    with capture_logs() as logs:
        assert await worker.run_once() == 1
    failed = [line for line in logs if line["event"] == "delivery attempt failed; retrying"]
    assert failed == [
        {
            "event": "delivery attempt failed; retrying",
            "log_level": "warning",
            "destination": "test.sink",
            "delivery_id": delivery_id,
            "attempt": 1,
            "retry_in_s": 5.0,
            "reason": "HTTP 503: upstream answered 503",
        }
    ]
