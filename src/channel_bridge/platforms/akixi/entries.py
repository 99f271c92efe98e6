"""Which Akixi Omnichannel entries are ours, and the properties each of ours should have.

Identity. OmnichannelIntList returns only IntegrationType and Description by default, and
its example answer (seed 001) carries no UniqueID; and an account that is not the system-wide
administrator may not set UniqueIDs ("Only specify a GUID if specified by the system-wide
administrative user"). So every entry we write carries a tag in its Description,
`BRIDGE_AKIXI_DESCRIPTION_FORMAT` (default `{name} [{key}]`, key = `BRIDGE_AKIXI_UNIQUE_ID_PREFIX`
+ integration id), and an entry is ours when its Description carries the tag, or when its
UniqueID (if List returns one) starts with the prefix. UniqueID itself is sent only when
`BRIDGE_AKIXI_SEND_UNIQUE_ID` says the account may.

Properties. Add and Change send the seed's full LiveChat set: the partition scope,
Description, APICommunicationSettings (AuthUserID1, AuthPassword1, AuthPassword2 when set,
and CommsEnabled) and the Advanced container; Add also UniqueID (when allowed) and
IntegrationType, which are read-only afterwards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from string import Formatter

from channel_bridge.platforms.akixi import schemas as ax
from channel_bridge.platforms.akixi.schemas import OmnichannelEntry, Payload, akixi_bool
from channel_bridge.settings import Settings


@dataclass(frozen=True)
class EntryNaming:
    """How our entries are named in Akixi (UniqueID, Description) and recognised again."""

    prefix: str
    description_format: str
    send_unique_id: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> EntryNaming:
        return cls(
            prefix=settings.akixi_unique_id_prefix,
            description_format=settings.akixi_description_format,
            send_unique_id=settings.akixi_send_unique_id,
        )

    def key_for(self, integration_id: str) -> str:
        """prefix + integration id: our UniqueID (when we may set it) and the Description tag."""
        return f"{self.prefix}{integration_id}"

    def unique_id_for(self, integration_id: str) -> str | None:
        """The UniqueID we set on Add, or None when Akixi assigns it."""
        return self.key_for(integration_id) if self.send_unique_id else None

    def description_for(self, integration_id: str, name: str | None) -> str:
        # Akixi shows Description in its reports; the id stands in for a nameless integration.
        shown = name.strip() if name and name.strip() else integration_id
        return self.description_format.format(name=shown, key=self.key_for(integration_id))

    def integration_id_of(self, entry: OmnichannelEntry) -> str | None:
        """Our integration behind an entry (Description tag, else UniqueID prefix), or None."""
        if entry.description:
            match = self._tag_pattern().fullmatch(entry.description)
            if match and match["key"].startswith(self.prefix):
                integration_id = match["key"][len(self.prefix) :]
                if integration_id:
                    return integration_id
        if entry.unique_id and self.prefix and entry.unique_id.startswith(self.prefix):
            return entry.unique_id[len(self.prefix) :] or None
        return None

    def _tag_pattern(self) -> re.Pattern[str]:
        parts = []
        for literal, name, _spec, _conversion in Formatter().parse(self.description_format):
            parts.append(re.escape(literal))
            if name == "key":
                parts.append(r"(?P<key>\S+)")
            elif name is not None:
                parts.append(".*")
        return re.compile("".join(parts), re.DOTALL)


def communication_settings(settings: Settings, *, comms_enabled: bool | None = None) -> Payload:
    """APICommunicationSettings: the LiveChat credentials that are set, and CommsEnabled."""
    container: Payload = {}
    if settings.akixi_auth_user_id1:
        container[ax.AUTH_USER_ID1] = settings.akixi_auth_user_id1
    for name, secret in (
        (ax.AUTH_PASSWORD1, settings.akixi_auth_password1),
        (ax.AUTH_PASSWORD2, settings.akixi_auth_password2),
    ):
        if secret is not None and secret.get_secret_value():
            container[name] = secret.get_secret_value()
    enabled = settings.akixi_comms_enabled_value if comms_enabled is None else comms_enabled
    container[ax.COMMS_ENABLED] = akixi_bool(enabled)
    return container


def advanced_settings(settings: Settings) -> Payload:
    return {
        ax.API_COMMS_LOGGING_ENABLED: akixi_bool(settings.akixi_api_comms_logging_enabled),
        ax.API_COMMS_LOGGING_INC_CLASS_NAMES: akixi_bool(
            settings.akixi_api_comms_logging_inc_class_names
        ),
        ax.INTERNAL_DIAG_DUMP_ENABLED: akixi_bool(settings.akixi_internal_diag_dump_enabled),
    }


def add_properties(
    settings: Settings, scope: Payload, integration_id: str, name: str | None
) -> Payload:
    """Everything an Add sends for one integration, in the seed's order."""
    naming = EntryNaming.from_settings(settings)
    unique_id = naming.unique_id_for(integration_id)
    return {
        **({ax.UNIQUE_ID: unique_id} if unique_id else {}),
        **scope,
        ax.INTEGRATION_TYPE: settings.akixi_integration_type,
        ax.DESCRIPTION: naming.description_for(integration_id, name),
        ax.API_COMMUNICATION_SETTINGS: communication_settings(settings),
        ax.ADVANCED: advanced_settings(settings),
    }


def change_properties(
    settings: Settings,
    scope: Payload,
    *,
    description: str,
    comms_enabled: bool | None = None,
) -> Payload:
    """The full set a Change sends (seed 001), without the read-only UniqueID/IntegrationType."""
    return {
        **scope,
        ax.DESCRIPTION: description,
        ax.API_COMMUNICATION_SETTINGS: communication_settings(
            settings, comms_enabled=comms_enabled
        ),
        ax.ADVANCED: advanced_settings(settings),
    }
