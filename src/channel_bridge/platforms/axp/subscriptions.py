"""AXP Digital - Notification 1.0.1 webhook subscriptions, and keeping ours converged.

The API has no renew, expiry or secret: a subscription lives until someone deletes it. So a
reconcile loop (start-up, then every BRIDGE_AXP_SUBSCRIPTION_RECONCILE_S) re-runs
`ensure_subscription` for every channel provider we know; that is what heals a deleted or
edited subscription. `ensure_subscription` converges with the fewest calls: one list, then at
most one create or one PUT, plus a delete per stale duplicate of ours.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field

from channel_bridge.ops.logging import get_logger
from channel_bridge.platforms.axp.destinations import AxpDestination
from channel_bridge.platforms.axp.errors import AxpApiError, AxpPermanentError, checked_request
from channel_bridge.platforms.axp.schemas import Subscription, SubscriptionRequest
from channel_bridge.relay.destinations import DeliveryContext, Destination

log = get_logger(__name__)

WEBHOOK_BASE = "/api/digital/webhook/v1"
# Our callback route; every URL under `{public base}{CALLBACK_PATH_PREFIX}` is ours.
CALLBACK_PATH_PREFIX = "/axp/callbacks/"


def callback_url_for(public_base_url: str, token: str) -> str:
    """The URL AXP calls: the unguessable token in the path is the only protection AXP allows."""
    base = public_base_url.rstrip("/")
    return f"{base}{CALLBACK_PATH_PREFIX}{quote(token, safe='')}/notifications"


def owned_prefix(callback_url: str) -> str:
    """`{public base}/axp/callbacks/`: URLs under it are this deployment's, whatever the token."""
    base, found, _ = callback_url.partition(CALLBACK_PATH_PREFIX)
    return base + CALLBACK_PATH_PREFIX if found else callback_url


class AxpSubscriptions:
    def __init__(self, http: httpx.AsyncClient, account_id: str) -> None:
        self._http = http
        self._path = f"{WEBHOOK_BASE}/accounts/{quote(account_id, safe='')}/subscriptions"

    async def list(self, channel_provider_id: str | None = None) -> list[Subscription]:
        params = {"channelProviderId": channel_provider_id} if channel_provider_id else None
        response = await checked_request(
            self._http, "GET", self._path, operation="list subscriptions", params=params
        )
        body = response.json()
        if not isinstance(body, list):
            raise AxpPermanentError("AXP list subscriptions answered something other than an array")
        return [Subscription.model_validate(item) for item in body]

    async def get(self, subscription_id: str) -> Subscription:
        response = await checked_request(
            self._http, "GET", self._one(subscription_id), operation="get subscription"
        )
        return Subscription.model_validate(response.json())

    async def create(
        self, *, channel_provider_id: str, callback_url: str, event_types: Sequence[str]
    ) -> Subscription:
        body = SubscriptionRequest(
            channelProviderId=channel_provider_id,
            callbackUrl=callback_url,
            eventTypes=list(event_types),  # type: ignore[arg-type]
        )
        response = await checked_request(
            self._http, "POST", self._path, operation="create subscription", json=body.to_wire()
        )
        return Subscription.model_validate(response.json())

    async def update(
        self,
        subscription_id: str,
        *,
        channel_provider_id: str,
        callback_url: str,
        event_types: Sequence[str],
    ) -> Subscription:
        """Replace the subscription (PUT carries the full object, as in the spec example)."""
        body = SubscriptionRequest(
            subscriptionId=subscription_id,
            channelProviderId=channel_provider_id,
            callbackUrl=callback_url,
            eventTypes=list(event_types),  # type: ignore[arg-type]
        )
        response = await checked_request(
            self._http,
            "PUT",
            self._one(subscription_id),
            operation="update subscription",
            json=body.to_wire(),
        )
        return Subscription.model_validate(response.json())

    async def delete(self, subscription_id: str) -> None:
        await checked_request(
            self._http, "DELETE", self._one(subscription_id), operation="delete subscription"
        )

    async def ensure_subscription(
        self, channel_provider_id: str, callback_url: str, event_types: Sequence[str]
    ) -> Subscription:
        """Exactly one subscription of ours for this provider, with these URL and types."""
        wanted = sorted(set(event_types))
        prefix = owned_prefix(callback_url)
        existing = await self.list(channel_provider_id)
        # Another provider's rows can appear if the filter is ignored; never touch them.
        existing = [s for s in existing if s.channelProviderId == channel_provider_id]
        exact = [s for s in existing if s.callbackUrl == callback_url]
        stale = [
            s
            for s in existing
            if s.callbackUrl != callback_url and s.callbackUrl.startswith(prefix)
        ]
        candidates = sorted(exact, key=lambda s: sorted(set(s.eventTypes)) != wanted) + stale
        if not candidates:
            created = await self.create(
                channel_provider_id=channel_provider_id,
                callback_url=callback_url,
                event_types=wanted,
            )
            log.info(
                "axp subscription created",
                channel_provider_id=channel_provider_id,
                subscription_id=created.subscriptionId,
            )
            return created
        keep, *duplicates = candidates
        if keep.callbackUrl != callback_url or sorted(set(keep.eventTypes)) != wanted:
            assert keep.subscriptionId is not None
            keep = await self.update(
                keep.subscriptionId,
                channel_provider_id=channel_provider_id,
                callback_url=callback_url,
                event_types=wanted,
            )
            log.info(
                "axp subscription updated",
                channel_provider_id=channel_provider_id,
                subscription_id=keep.subscriptionId,
            )
        for duplicate in duplicates:
            if duplicate.subscriptionId:
                await self.delete(duplicate.subscriptionId)
                log.info(
                    "axp duplicate subscription deleted",
                    channel_provider_id=channel_provider_id,
                    subscription_id=duplicate.subscriptionId,
                )
        return keep

    def _one(self, subscription_id: str) -> str:
        return f"{self._path}/{quote(subscription_id, safe='')}"


class SubscriptionEnsurePayload(BaseModel):
    """`axp.subscription.ensure`: the subscription of one channel provider."""

    model_config = ConfigDict(extra="ignore")

    channel_provider_id: str = Field(min_length=1)


def subscription_destination(
    subscriptions: AxpSubscriptions, *, callback_url: str, event_types: Sequence[str]
) -> Destination:
    """Destination `axp.subscription.ensure`."""

    async def handle(ctx: DeliveryContext[SubscriptionEnsurePayload]) -> dict[str, Any] | None:
        provider = ctx.payload.channel_provider_id
        subscription = await subscriptions.ensure_subscription(provider, callback_url, event_types)
        return {"subscriptionId": subscription.subscriptionId, "channelProviderId": provider}

    return Destination(AxpDestination.SUBSCRIPTION_ENSURE, handle, SubscriptionEnsurePayload)


async def reconcile_once(
    subscriptions: AxpSubscriptions,
    *,
    provider_ids: Callable[[], Awaitable[Sequence[str]]],
    callback_url: str,
    event_types: Sequence[str],
) -> dict[str, str]:
    """Ensure every known provider; one provider's failure does not stop the others."""
    outcomes: dict[str, str] = {}
    for provider in await provider_ids():
        try:
            await subscriptions.ensure_subscription(provider, callback_url, event_types)
            outcomes[provider] = "ok"
        except AxpApiError as exc:
            outcomes[provider] = "failed"
            log.warning(
                "axp subscription reconcile failed", channel_provider_id=provider, error=str(exc)
            )
    return outcomes


async def reconcile_forever(
    subscriptions: AxpSubscriptions,
    *,
    provider_ids: Callable[[], Awaitable[Sequence[str]]],
    callback_url: str,
    event_types: Sequence[str],
    interval_s: float,
) -> None:
    """Reconcile at start-up and then every `interval_s` until cancelled."""
    while True:
        try:
            await reconcile_once(
                subscriptions,
                provider_ids=provider_ids,
                callback_url=callback_url,
                event_types=event_types,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the DB may be briefly unreachable; try again next round
            log.warning("axp subscription reconcile round failed", error=type(exc).__name__)
        await asyncio.sleep(interval_s)
