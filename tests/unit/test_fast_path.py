"""ops/fast_path.py: a marked route is called directly, with the app's own error answers."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from channel_bridge.errors import PROBLEM_CONTENT_TYPE, BridgeError, NotFound
from channel_bridge.ops.fast_path import FastPathMiddleware, fast_path, fast_routes

ROUTER_RAN: list[str] = []


def _through_router() -> None:
    # A router-level dependency: runs only when a request goes through FastAPI's routing.
    ROUTER_RAN.append("router")


router = APIRouter(dependencies=[Depends(_through_router)])


@router.post("/hooks/{hook_id}/in")
@fast_path
async def marked(hook_id: str, request: Request) -> JSONResponse:
    body = await request.body()
    if hook_id == "missing":
        raise NotFound("No such hook")
    if hook_id == "bug":
        raise RuntimeError("a bug")
    route = request.scope["route"].path
    return JSONResponse({"hook": hook_id, "bytes": len(body), "route": route})


@router.post("/hooks/{hook_id}/slow")
async def unmarked(hook_id: str) -> dict[str, str]:
    return {"hook": hook_id}


def _app() -> FastAPI:
    app = FastAPI()

    @app.exception_handler(BridgeError)
    async def _problem(_request: Request, exc: BridgeError) -> JSONResponse:
        return JSONResponse(
            exc.to_problem(), status_code=exc.status, media_type=PROBLEM_CONTENT_TYPE
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, _exc: Exception) -> JSONResponse:
        return JSONResponse({"status": 500}, status_code=500, media_type=PROBLEM_CONTENT_TYPE)

    app.include_router(router)
    app.add_middleware(FastPathMiddleware, routes=fast_routes(router.routes))
    return app


def _client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def test_only_marked_routes_are_collected() -> None:
    assert [route.path for route in fast_routes(router.routes)] == ["/hooks/{hook_id}/in"]


async def test_a_marked_route_skips_the_router_and_keeps_its_route_in_the_scope() -> None:
    ROUTER_RAN.clear()
    async with _client(_app()) as client:
        response = await client.post("/hooks/h-1/in", content=b"12345")
    assert response.status_code == 200
    assert response.json() == {"hook": "h-1", "bytes": 5, "route": "/hooks/{hook_id}/in"}
    assert ROUTER_RAN == []


async def test_other_routes_and_methods_go_through_the_router() -> None:
    ROUTER_RAN.clear()
    async with _client(_app()) as client:
        slow = await client.post("/hooks/h-1/slow")
        wrong_method = await client.get("/hooks/h-1/in")
    assert slow.json() == {"hook": "h-1"}
    assert wrong_method.status_code == 405
    assert ROUTER_RAN == ["router"]


async def test_errors_get_the_apps_own_answers() -> None:
    async with _client(_app()) as client:
        missing = await client.post("/hooks/missing/in")
        bug = await client.post("/hooks/bug/in")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert missing.json()["detail"] == "No such hook"
    assert bug.status_code == 500
    assert bug.json() == {"status": 500}
