"""The AXP simulator as a separate process for the benchmarks (not a test).

    python bench/upstream.py --port 18081 --latency-ms 10

Serves the sandbox AXP simulator (answers after `--latency-ms`) plus two bench-only routes:
`GET /_bench/stats` (messages accepted, token requests) and `GET /_bench/received` (each
accepted providerMessageId with the wall-clock time it arrived).
"""

from __future__ import annotations

import argparse
import time

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from channel_bridge.sandbox.axp import AxpSimulator
from channel_bridge.sandbox.mode import AXP_APP_KEY, AXP_CLIENT_SECRET, SANDBOX_ACCOUNT


def build(latency_ms: float) -> FastAPI:
    sim = AxpSimulator(
        account_id=SANDBOX_ACCOUNT,
        client_id="sandbox-client",
        client_secret=AXP_CLIENT_SECRET,
        app_key=AXP_APP_KEY,
        agent=False,
    )
    sim.faults.latency_s = latency_ms / 1000
    arrivals: list[tuple[str, float]] = []
    original = sim._accept_customer_message

    def accept_and_stamp(body):  # type: ignore[no-untyped-def]
        answer = original(body)
        arrivals.append((str(body.get("providerMessageId")), time.time()))
        return answer

    sim._accept_customer_message = accept_and_stamp  # type: ignore[method-assign]
    # The simulator records every request for tests; a long benchmark must not keep them all.
    sim.requests = _Discard()  # type: ignore[assignment]
    app = sim.app

    @app.get("/_bench/stats")
    async def stats() -> dict[str, object]:
        return {
            "messages": len(arrivals),
            "token_requests": sim.token_requests,
            "error_rate": sim.faults.error_rate,
        }

    @app.get("/_bench/received")
    async def received() -> Response:
        return JSONResponse(arrivals)

    @app.post("/_bench/faults")
    async def faults(error_rate: float = 0.0) -> dict[str, float]:
        sim.faults.error_rate = error_rate
        sim.faults.error_status = 503
        return {"error_rate": error_rate}

    @app.post("/_bench/reset")
    async def reset() -> dict[str, bool]:
        arrivals.clear()
        sim.messages.clear()
        sim._sent.clear()
        sim.token_requests = 0
        return {"reset": True}

    sim.messages = _Discard()  # type: ignore[assignment]
    return app


class _Discard(list):  # type: ignore[type-arg]
    def append(self, _item: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=10.0)
    args = parser.parse_args()
    uvicorn.run(
        build(args.latency_ms),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
