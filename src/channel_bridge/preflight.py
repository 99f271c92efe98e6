"""`check-config`'s online checks: the database, and each configured upstream's credentials.

Each check returns one line: `ok <what>: <detail>` or `error <what>: <cause and fix>`, naming
the variable to change. Nothing is written anywhere: AXP is asked for a token, Akixi for a
session, Nexus (which has no token endpoint) answers any HTTP request to its base URL.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from channel_bridge.errors import BridgeError
from channel_bridge.outbound import build_client
from channel_bridge.platforms.akixi.client import AkixiClient
from channel_bridge.platforms.axp.auth import AxpTokenAuth, axp_configured, build_axp_http
from channel_bridge.relay.errors import DeliveryError
from channel_bridge.settings import Settings
from channel_bridge.startup import StartupFault, check_database, describe_unreachable


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok' if self.ok else 'error'} {self.name}: {self.detail}"


async def run_checks(settings: Settings) -> list[CheckResult]:
    """The database, then every configured upstream, each bounded by the HTTP timeout."""
    results = [await _database(settings)]
    if settings.sandbox_mode:
        results.append(CheckResult("upstreams", True, "sandbox mode: AXP, Nexus, Akixi simulated"))
        return results
    for name, check in (("axp", _axp), ("nexus", _nexus), ("akixi", _akixi)):
        if not _configured(settings, name):
            continue
        try:
            async with asyncio.timeout(settings.http_timeout_s + 1):
                detail = await check(settings)
        except TimeoutError:
            results.append(CheckResult(name, False, "no answer in time: check the URL and network"))
        except (BridgeError, DeliveryError, httpx.HTTPError) as exc:
            results.append(CheckResult(name, False, _upstream_fault(name, exc)))
        else:
            results.append(CheckResult(name, True, detail))
    return results


def _configured(settings: Settings, name: str) -> bool:
    if name == "axp":
        return axp_configured(settings)
    if name == "nexus":
        return bool(settings.nexus_base_url)
    return bool(settings.akixi_url)


async def _database(settings: Settings) -> CheckResult:
    try:
        state = await check_database(settings)
    except StartupFault as exc:
        return CheckResult("database", False, str(exc).removeprefix("database error: "))
    return CheckResult("database", True, f"{state.where}, schema at {state.revision}")


async def _axp(settings: Settings) -> str:
    async with build_axp_http(settings) as http:
        auth = http.auth
        assert isinstance(auth, AxpTokenAuth)
        await auth.token()
    return f"token issued by {settings.axp_base_url} for account {settings.axp_account_id}"


async def _nexus(settings: Settings) -> str:
    assert settings.nexus_base_url
    async with build_client(settings) as http:
        response = await http.get(settings.nexus_base_url)
    return f"{settings.nexus_base_url} answers (HTTP {response.status_code})"


async def _akixi(settings: Settings) -> str:
    async with build_client(settings) as http:
        await AkixiClient(http, settings).log_in()
    return f"session opened at {settings.akixi_url} as {settings.akixi_user}"


def _upstream_fault(name: str, exc: Exception) -> str:
    transport = exc if isinstance(exc, httpx.TransportError) else exc.__cause__
    if isinstance(transport, httpx.TransportError):
        return describe_unreachable(transport)
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    hint = {
        "axp": "check BRIDGE_AXP_ACCOUNT_ID, BRIDGE_AXP_CLIENT_ID, BRIDGE_AXP_CLIENT_SECRET "
        "and BRIDGE_AXP_APP_KEY",
        "nexus": "check BRIDGE_NEXUS_BASE_URL",
        "akixi": "check BRIDGE_AKIXI_URL, BRIDGE_AKIXI_USER and BRIDGE_AKIXI_PASSWORD",
    }[name]
    return f"{message}: {hint}"
