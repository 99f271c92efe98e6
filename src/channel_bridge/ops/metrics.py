"""Prometheus metrics. HTTP metrics are labelled by route template, never by raw path."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

http_requests = Counter(
    "bridge_http_requests_total", "HTTP requests served", ["method", "route", "status"]
)
http_request_seconds = Histogram(
    "bridge_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)

# Relay metrics
webhooks = Counter("bridge_webhooks_total", "Inbound webhooks by outcome", ["source", "outcome"])
ack_seconds = Histogram(
    "bridge_ack_seconds", "Webhook receipt to acknowledgement", ["source"], buckets=LATENCY_BUCKETS
)
deliveries = Counter(
    "bridge_deliveries_total", "Delivery attempts by outcome", ["destination", "outcome"]
)
delivery_attempt_seconds = Histogram(
    "bridge_delivery_attempt_seconds",
    "Duration of one delivery attempt",
    ["destination"],
    buckets=LATENCY_BUCKETS,
)
relay_seconds = Histogram(
    "bridge_relay_seconds",
    "Accepted to delivered",
    ["destination"],
    buckets=(*LATENCY_BUCKETS, 30, 60, 300, 1800, 3600),
)
outbox_depth = Gauge("bridge_outbox_depth", "Deliveries by status", ["status"])
outbox_oldest_due_seconds = Gauge(
    "bridge_outbox_oldest_due_seconds", "Age of the oldest due pending delivery"
)
relay_ack_priority_share = Gauge(
    "bridge_relay_ack_priority_share",
    "Share of the in-process relay worker's slots left to it by the event loop's lag (1 = all)",
)
event_loop_lag_seconds = Gauge(
    "bridge_event_loop_lag_seconds",
    "Mean lag of the serving process's event loop over the last ack-priority period",
)
dead_letters = Gauge("bridge_dead_letters", "Deliveries in the dead state")
destination_state = Gauge(
    "bridge_destination_state",
    "Circuit breaker of each upstream as this worker last read it: 0 closed, 1 open, 2 paused",
    ["circuit"],
)

# Bridge metrics
bridge_events = Counter(
    "bridge_events_total",
    "Relayed events by kind and outcome (relayed, unroutable, echo, ...)",
    ["kind", "outcome"],
)
engagement_errors = Counter(
    "bridge_engagement_errors_total",
    "AXP ENGAGEMENT_ERROR events matched to a delivery",
    ["matched"],
)

# Akixi WS: outcome is success, fail:<code>, http:<status>, timeout, unreachable, bad_xml.
akixi_calls = Counter(
    "bridge_akixi_calls_total", "Akixi WS requests by outcome", ["operation", "outcome"]
)
akixi_logins = Counter(
    "bridge_akixi_logins_total", "Akixi CreateSession+Authenticate by outcome", ["outcome"]
)


def render_latest() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


# One child per label set, looked up in a dict: `labels()` costs a lock and a tuple check per
# call, on every request. prometheus_client keeps a child until `remove()`/`clear()`, which
# nothing here calls, so the cached one is the series the registry exports. Children are
# still made on first use, so no series appears before its first event.
_http_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def labelled(metric: Any, *values: str) -> Any:
    """`metric.labels(*values)`, made once per label set (for the per-request metrics)."""
    key = (id(metric), values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


def observe_http_request(method: str, template: str, status: int, seconds: float) -> None:
    """Count one served request and its latency, labelled by route template."""
    key = (method, template, status)
    children = _http_children.get(key)
    if children is None:
        children = _http_children[key] = (
            http_requests.labels(method, template, str(status)),
            http_request_seconds.labels(method, template),
        )
    children[0].inc()
    children[1].observe(seconds)


def route_template(scope: Scope) -> str:
    """The metrics label of a request: its route's template, or `unmatched`."""
    return getattr(scope.get("route"), "path", None) or "unmatched"


class MetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware overhead on the hot path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_holder: dict[str, Any] = {"status": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            observe_http_request(
                scope.get("method", "GET"),
                route_template(scope),
                status_holder["status"],
                time.perf_counter() - started,
            )
