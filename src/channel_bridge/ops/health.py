"""Liveness, readiness and Prometheus endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from channel_bridge.ops.logging import get_logger
from channel_bridge.ops.metrics import render_latest

log = get_logger(__name__)
router = APIRouter(tags=["ops"])

READINESS_TIMEOUT_S = 2.0


@router.get("/healthz", summary="Liveness: the process answers (no I/O)")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


# What else readiness reports: an async function of a session returning a JSON object (e.g.
# each upstream's circuit breaker). It informs; it never makes the pod unready (an upstream
# outage is no reason to stop accepting).
ReadinessDetail = Callable[[AsyncSession], Awaitable[dict[str, Any]]]


class Readiness(Protocol):
    """What /readyz reads from the lifespan's state (`request.state.bridge`)."""

    engine: AsyncEngine
    readiness_detail: ReadinessDetail | None


@router.get("/readyz", summary="Readiness: the database answers a round-trip")
async def readyz(request: Request) -> JSONResponse:
    state: Readiness = request.state.bridge
    engine, detail = state.engine, state.readiness_detail
    extra: dict[str, Any] = {}
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_S):
            async with AsyncSession(engine) as session:
                await session.execute(text("SELECT 1"))
                if detail is not None:
                    extra = await _detail_or_nothing(detail, session)
    except Exception as exc:  # any failure means "not ready", never a 500
        return JSONResponse(
            {"status": "unavailable", "reason": f"database: {type(exc).__name__}"}, status_code=503
        )
    return JSONResponse({"status": "ready", **extra})


async def _detail_or_nothing(detail: ReadinessDetail, session: AsyncSession) -> dict[str, Any]:
    """The detail informs only: if it cannot be read (say, before the first migration), the
    answer is still the database's."""
    try:
        return await detail(session)
    except Exception as exc:
        log.warning("readiness detail unavailable", error=type(exc).__name__)
        return {}


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics() -> Response:
    body, content_type = render_latest()
    return Response(body, media_type=content_type)
