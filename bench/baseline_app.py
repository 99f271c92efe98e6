"""The baseline for the acknowledgement benchmark: a bare FastAPI app that reads the body and
returns 200, served with the same uvicorn options as `channel-bridge serve`."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def create_app() -> FastAPI:
    app = FastAPI()

    @app.post("/{path:path}")
    async def accept(path: str, request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"messageId": "baseline"})

    return app
