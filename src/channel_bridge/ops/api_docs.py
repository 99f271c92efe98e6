"""The API's own documentation: OpenAPI with its bearer scheme, descriptions and
problem+json error models, and Swagger UI / ReDoc served from the bridge's own static files
(fastapi-offline's copies), so `/docs` works in a cluster without egress to a CDN.
"""

from __future__ import annotations

import re
import warnings
from http import HTTPStatus
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from channel_bridge.errors import PROBLEM_CONTENT_TYPE

STATIC = Path(fastapi_offline.__file__).parent / "static"
ASSETS = "/docs/assets"

DESCRIPTION = """\
Relays messages between **AXP Custom Messaging** and **Genesys Digital Channels (Nexus)
Async**, and mirrors AXP integrations into **Akixi**.

* **Webhooks and callbacks** (`/nexus/…`, `/axp/callbacks/…`) are called by the platforms:
  Nexus signs each webhook (`X-Hub-Signature`), AXP callbacks carry an unguessable token in
  their path. Each is acknowledged only once it is stored; relaying follows from a durable
  outbox.
* **Admin API** (`/admin/v1/…`): channel and integration mappings, deliveries (dead letters,
  replay) and AXP administration. Every call needs `Authorization: Bearer <BRIDGE_ADMIN_TOKEN>`
  (use *Authorize* above).
* **Errors** are always `application/problem+json` (RFC 9457): `type`, `title`, `status`,
  `detail`, and `errors` (`field`, `message`) for refused input. No response carries a secret
  or a stack trace.
* **Operations**: `/healthz` (liveness, no I/O), `/readyz` (the database; it also says when
  relaying is off and why, and each upstream's circuit breaker), `/metrics` (Prometheus).
"""

TAGS = [
    {"name": "ops", "description": "Liveness and readiness, for probes and load balancers."},
    {"name": "nexus", "description": "Called by Nexus: the Digital Channels Async webhook."},
    {
        "name": "genesys-cloud",
        "description": "Called by Genesys Cloud: the Open Messaging outbound webhook.",
    },
    {"name": "axp", "description": "Called by AXP: digital notifications and lifecycle callbacks."},
    {
        "name": "admin: channels",
        "description": "Which Nexus channel relays to which AXP integration, with its "
        "secrets (write-only).",
    },
    {
        "name": "admin: integrations",
        "description": "AXP integrations known to the bridge, and lifecycle callbacks "
        "held for review.",
    },
    {
        "name": "deliveries",
        "description": "The outbox: list, inspect, replay and cancel deliveries; the "
        "upstreams' circuit breakers.",
    },
    {
        "name": "axp-admin",
        "description": "Read-only AXP administration: element inventory and phone numbers.",
    },
]


class FieldError(BaseModel):
    field: str = Field(description="Where the refused value is, e.g. body.webhook_secret")
    message: str = Field(description="Why it was refused (the value itself is never echoed)")


class Problem(BaseModel):
    """RFC 9457 problem details: the body of every 4xx and 5xx answer."""

    type: str = Field(description="A URL naming the kind of problem")
    title: str = Field(description="Short summary of the kind of problem")
    status: int = Field(description="The HTTP status code")
    detail: str = Field(description="What went wrong with this request, for a person")
    errors: list[FieldError] | None = Field(default=None, description="Refused input fields")


def install_api_docs(app: FastAPI) -> None:
    """Serve /docs and /redoc from local assets and build the OpenAPI document once."""
    app.mount(ASSETS, StaticFiles(directory=STATIC), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} API",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} API",
            redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with problem+json for every error answer and unique operation ids."""
    with warnings.catch_warnings():
        # A route serving several methods shares one id; they are made unique below.
        warnings.filterwarnings("ignore", message="Duplicate Operation ID")
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=DESCRIPTION,
            routes=app.routes,
            tags=TAGS,
        )
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    model = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(model.pop("$defs", {}))
    schemas["Problem"] = model
    problem = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    seen: set[str] = set()
    for item in schema.get("paths", {}).values():
        for method, operation in item.items():
            operation_id = operation.get("operationId")
            if operation_id in seen:
                operation["operationId"] = re.sub(r"_[a-z]+$", f"_{method}", operation_id)
            seen.add(operation["operationId"])
            responses = operation.setdefault("responses", {})
            if operation.get("security"):
                responses.setdefault("401", {"description": "No valid admin bearer token"})
            for code, response in responses.items():
                if code.isdigit() and int(code) >= 400:
                    response["content"] = problem
                    if code == "422" or not response.get("description"):
                        response["description"] = _describe(int(code))
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema


def _describe(status: int) -> str:
    if status == 422:
        return "The request is not valid: `errors` names each refused field"
    return HTTPStatus(status).phrase
