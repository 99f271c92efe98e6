"""What an AXP messaging integration change queues: its Akixi mirror and AXP's subscription.

`IntegrationService` (mappings) stores the change and asks this planner for the deliveries
that go with it, inserted in the same transaction. An active integration is mirrored into
Akixi (`akixi.upsert`, created or changed) and gets the bridge's notification subscription on
its channel provider (`axp.subscription.ensure`); a deleted one loses its mirror
(`akixi.delete`). Each integration's mirror calls share a partition, so they land in order.
"""

from __future__ import annotations

from typing import Literal

from channel_bridge.bridge import partitions
from channel_bridge.db.models import Integration
from channel_bridge.platforms.akixi.destinations import AkixiDestination
from channel_bridge.platforms.axp.destinations import AxpDestination
from channel_bridge.relay.envelope import DeliveryRequest


class IntegrationDeliveries:
    """The bridge's `IntegrationChangePlanner`."""

    def upserted(
        self, row: Integration, action: Literal["created", "updated"], changed: list[str]
    ) -> list[DeliveryRequest]:
        requests = []
        if changed or action == "created":
            requests.append(
                DeliveryRequest(
                    destination=AkixiDestination.UPSERT,
                    payload={
                        "action": action,
                        # The Akixi mirror's switch between OmnichannelIntAdd and ...Change.
                        "created": action == "created",
                        "integration_id": row.integration_id,
                        "name": row.name,
                        "account_id": row.account_id,
                        "channel_provider_id": row.channel_provider_id,
                        "changed": changed,
                    },
                    partition_key=partitions.akixi(row.integration_id),
                )
            )
        if row.channel_provider_id:
            requests.append(
                DeliveryRequest(
                    destination=AxpDestination.SUBSCRIPTION_ENSURE,
                    payload={"channel_provider_id": row.channel_provider_id},
                    partition_key=partitions.axp_subscription(row.channel_provider_id),
                )
            )
        return requests

    def deleted(self, row: Integration) -> list[DeliveryRequest]:
        return [
            DeliveryRequest(
                destination=AkixiDestination.DELETE,
                payload={
                    "integration_id": row.integration_id,
                    "name": row.name,
                    "account_id": row.account_id,
                    "channel_provider_id": row.channel_provider_id,
                },
                partition_key=partitions.akixi(row.integration_id),
            )
        ]
