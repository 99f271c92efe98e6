"""No configured secret value in any log line or response, over a whole sandbox-mode run.

The run crosses every hop (Nexus webhook -> AXP send -> simulated agent's callbacks ->
Nexus message), the admin API (create a channel with new secrets, read it back), and the
refusals (bad signature, bad admin token, bad callback token), with DEBUG logging on.
The bridge is the session's sandbox-mode subprocess, so the log also covers whatever the
OpenAPI fuzzer sent it when that ran first.
"""

from __future__ import annotations

import time
import uuid

import httpx

from channel_bridge.platforms.nexus.signing import SIGNATURE_HEADER, sign
from channel_bridge.sandbox import mode
from tests.conftest import TEST_ADMIN_TOKEN, TEST_CALLBACK_TOKEN
from tests.hostile.conftest import SECRET_VALUES, SandboxBridge

NEW_WEBHOOK_SECRET = "fresh-webhook-secret-5b1e7c3a9d2f4e6a8c0b"
NEW_API_SECRET = "fresh-api-secret-2d4f6a8c0e1b3d5f7a9c"


def test_no_secret_in_logs_or_responses(sandbox_bridge: SandboxBridge) -> None:
    admin = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
    responses: list[httpx.Response] = []
    with httpx.Client(base_url=sandbox_bridge.url, timeout=30) as client:

        def call(method: str, path: str, **kwargs: object) -> httpx.Response:
            response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
            responses.append(response)
            return response

        # The happy path: a signed webhook relayed through every hop.
        message_id = f"leak-{uuid.uuid4().hex[:8]}"
        body = (
            f'{{"id":"{message_id}","to":"+15557654321","from":"{mode.DEMO_NEXUS_CHANNEL}",'
            '"text":"is my order here?"}'
        ).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(body, mode.DEMO_WEBHOOK_SECRET, "hex"),
        }
        assert (
            call(
                "POST",
                f"/nexus/channels/{mode.DEMO_NEXUS_CHANNEL}/webhook",
                content=body,
                headers=headers,
            ).status_code
            == 200
        )
        # Admin API: a channel with new secrets, read back (the secrets must come back masked).
        created = call(
            "POST",
            "/admin/v1/channels",
            headers=admin,
            json={
                "nexus_channel_id": "+15550109999",
                "axp_integration_id": mode.DEMO_INTEGRATION_ID,
                "webhook_secret": NEW_WEBHOOK_SECRET,
                "api_secret": NEW_API_SECRET,
            },
        )
        assert created.status_code == 201, created.text
        assert call("GET", "/admin/v1/channels/+15550109999", headers=admin).status_code == 200
        assert call("GET", "/admin/v1/channels", headers=admin).status_code == 200
        assert call("GET", "/admin/v1/integrations", headers=admin).status_code == 200
        # Refusals, each of which might be tempted to log what it refused.
        assert (
            call(
                "POST",
                f"/nexus/channels/{mode.DEMO_NEXUS_CHANNEL}/webhook",
                content=body,
                headers={**headers, SIGNATURE_HEADER: "sha256=" + "0" * 64},
            ).status_code
            == 401
        )
        assert (
            call(
                "GET",
                "/admin/v1/channels",
                headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}x"},
            ).status_code
            == 401
        )
        assert (
            call(
                "POST",
                f"/axp/callbacks/{TEST_CALLBACK_TOKEN}x/notifications",
                json={"eventType": "MESSAGES"},
            ).status_code
            == 404
        )
        assert call(
            "POST",
            f"/axp/callbacks/{TEST_CALLBACK_TOKEN}/notifications",
            json={"eventType": "MESSAGES", "x": 1},
        ).status_code in (200, 422)

        # Wait until the simulated agent's answer came back through the bridge to Nexus.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            deliveries = call("GET", "/admin/v1/deliveries?limit=200", headers=admin).json()
            items = deliveries["items"] if isinstance(deliveries, dict) else deliveries
            destinations = {(d["destination"], d["status"]) for d in items}
            if ("nexus.send_message", "delivered") in destinations:
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"the agent reply never reached Nexus: {destinations}")

    log = sandbox_bridge.log_text()
    assert "relayed nexus message to axp" in log  # the log really covers the run
    for secret in (*SECRET_VALUES, NEW_WEBHOOK_SECRET, NEW_API_SECRET):
        assert secret not in log, f"a secret ({secret[:6]}…) is in the bridge log"
        for response in responses:
            assert secret not in response.text, f"{response.request.url.path} returned a secret"
            assert all(secret not in value for value in response.headers.values())
