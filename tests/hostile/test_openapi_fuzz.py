"""schemathesis over the app's own OpenAPI: no 500 ever, every 4xx a problem+json body.

Run twice: with the admin token (admin routes do real work) and without (every admin
route must refuse with 401 problem+json, never crash). Bounded example count for CI;
BRIDGE_FUZZ_EXAMPLES raises it.
"""

from __future__ import annotations

import json
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case

from tests.conftest import TEST_ADMIN_TOKEN
from tests.hostile.conftest import SandboxBridge

EXAMPLES = int(os.environ.get("BRIDGE_FUZZ_EXAMPLES", "15"))
PROBLEM = "application/problem+json"


@pytest.fixture(scope="session")
def api_schema(sandbox_bridge: SandboxBridge) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{sandbox_bridge.url}/openapi.json")


def check_answer(case: Case, status: int, headers: dict[str, str], body: bytes) -> None:
    where = f"{case.method} {case.formatted_path}"
    # An upstream the sandbox does not simulate may give 502/503/504 (a gateway answer about
    # someone else); a 500 is always ours.
    assert status < 500 or status in (502, 503, 504), f"{where} answered {status}: {body[:500]!r}"
    if status >= 400:
        content_type = headers.get("content-type", "")
        assert content_type.startswith(PROBLEM), f"{where} {status} with {content_type}"
        problem = json.loads(body)
        assert problem["status"] == status and problem["title"] and "detail" in problem, problem


FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
# Liveness routes answer without a token by design; webhooks and callbacks authenticate by
# signature or path token, so they answer 4xx (never 2xx) to a fuzzer.
PUBLIC = ("/healthz", "/readyz", "/livez")


def fuzz_every_operation(schema: schemathesis.BaseSchema, token: str | None) -> list[str]:
    """Run each operation's strategy; return the operations that were exercised."""
    exercised = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @FUZZ
        def run(case: Case) -> None:
            headers = {
                k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"
            }
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            case.headers = headers
            response = case.call(timeout=30)
            headers_seen = {
                k.lower(): v[0] if isinstance(v, list) else v for k, v in response.headers.items()
            }
            check_answer(case, response.status_code, headers_seen, response.content)
            if token is None and response.status_code < 400:
                assert case.path.startswith(PUBLIC), (
                    f"{case.method} {case.formatted_path} answered {response.status_code} "
                    "without a token"
                )

        run()
        exercised.append(operation.label)
    return exercised


def test_api_with_admin_token_never_500(api_schema: schemathesis.BaseSchema) -> None:
    exercised = fuzz_every_operation(api_schema, TEST_ADMIN_TOKEN)
    assert any("/channels" in label for label in exercised)


def test_api_unauthenticated_never_500(api_schema: schemathesis.BaseSchema) -> None:
    exercised = fuzz_every_operation(api_schema, None)
    assert any("/nexus/channels/" in label for label in exercised)
