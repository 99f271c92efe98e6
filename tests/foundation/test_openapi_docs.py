"""/docs and /openapi.json: a bearer scheme (the Authorize button), descriptions, every error
answer documented as problem+json (what the app really sends), unique operation ids with no
warning, and Swagger UI / ReDoc assets served by the bridge itself (no CDN)."""

from __future__ import annotations

import asyncio
import re
import warnings
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from channel_bridge.app import create_app
from tests.conftest import make_settings, running_app


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('openapi') / 'bridge.db'}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a duplicate operation id warning fails the test
        return create_app(make_settings(url)).openapi()


def operations(openapi: dict[str, Any]):  # type: ignore[no-untyped-def]
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_the_admin_api_declares_its_bearer_scheme(openapi: dict[str, Any]) -> None:
    assert openapi["components"]["securitySchemes"]["adminToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "BRIDGE_ADMIN_TOKEN",
    }
    admin = [(p, m, o) for p, m, o in operations(openapi) if p.startswith("/admin/")]
    assert admin
    for path, method, operation in admin:
        assert operation["security"] == [{"adminToken": []}], (method, path)
        assert "401" in operation["responses"], (method, path)
    for path, _method, operation in operations(openapi):
        if not path.startswith("/admin/"):
            assert "security" not in operation, path  # webhooks authenticate otherwise


def test_every_error_answer_is_documented_as_problem_json(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert set(schemas["Problem"]["required"]) == {"type", "title", "status", "detail"}
    errors = 0
    for path, method, operation in operations(openapi):
        for code, response in operation["responses"].items():
            if int(code) >= 400:
                errors += 1
                assert response["content"] == {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                }, (method, path, code)
                assert response["description"], (method, path, code)
    assert errors > 40


def test_operation_ids_are_unique(openapi: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _p, _m, operation in operations(openapi)]
    assert len(ids) == len(set(ids))


def test_the_document_describes_the_api(openapi: dict[str, Any]) -> None:
    assert "Bearer <BRIDGE_ADMIN_TOKEN>" in openapi["info"]["description"]
    assert "problem+json" in openapi["info"]["description"]
    used = {tag for _p, _m, op in operations(openapi) for tag in op.get("tags", [])}
    described = {tag["name"] for tag in openapi["tags"] if tag["description"]}
    assert used <= described


def test_a_real_401_and_422_match_the_documented_problem(
    openapi: dict[str, Any], tmp_path: Path
) -> None:
    components = openapi["components"]["schemas"]
    schema = {**components["Problem"], "$defs": components}
    schema = _inline_refs(schema, components)

    async def answers() -> list[dict[str, Any]]:
        from channel_bridge.db.migrate import upgrade

        url = f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"
        upgrade(url)
        async with running_app(make_settings(url)) as (_app, client):
            unauthorized = await client.get("/admin/v1/channels")
            invalid = await client.post(
                "/admin/v1/channels",
                json={"nexus_channel_id": ""},
                headers={"Authorization": "Bearer admin-test-token-4b7c1e9a2f6d8c3b5a0e"},
            )
        assert (unauthorized.status_code, invalid.status_code) == (401, 422)
        return [unauthorized.json(), invalid.json()]

    for body in asyncio.run(answers()):
        jsonschema.validate(body, schema)


def _inline_refs(node: Any, components: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline_refs(components[node["$ref"].rsplit("/", 1)[-1]], components)
        return {k: _inline_refs(v, components) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(item, components) for item in node]
    return node


def test_swagger_ui_and_redoc_load_only_the_bridges_own_assets(tmp_path: Path) -> None:
    async def fetch() -> dict[str, tuple[int, str, str]]:
        url = f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"
        async with running_app(make_settings(url)) as (_app, client):
            pages = {path: await client.get(path) for path in ("/docs", "/redoc")}
            assets = {
                src
                for page in pages.values()
                for src in re.findall(r'(?:src|href)="([^"]+)"', page.text)
            }
            fetched = {path: await client.get(path) for path in assets}
        return {
            path: (r.status_code, r.headers.get("content-type", ""), r.text[:20])
            for path, r in {**pages, **fetched}.items()
        }

    answers = asyncio.run(fetch())
    assets = [path for path in answers if path not in ("/docs", "/redoc")]
    assert len(assets) >= 4  # swagger js + css, redoc js, favicon
    for path in assets:
        assert path.startswith("/docs/assets/"), f"{path} is not served by the bridge"
    for path, (status, content_type, _head) in answers.items():
        assert status == 200, path
        if path.endswith(".js"):
            assert "javascript" in content_type, path
