"""Akixi WS vocabulary, spelled exactly as the documentation's examples (seed 001).

Note the documented inconsistency: operations are `Omnichannel…` (lower-case c) while the
List field property is `OmniChannelIntFields` (capital C). Both are copied as printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Operations (seed 001 and authentication.html).
CREATE_SESSION = "CreateSession"
AUTHENTICATE = "Authenticate"
OMNICHANNEL_ADD = "OmnichannelIntAdd"
OMNICHANNEL_CHANGE = "OmnichannelIntChange"
OMNICHANNEL_DELETE = "OmnichannelIntDelete"
OMNICHANNEL_INFO = "OmnichannelIntInfo"
OMNICHANNEL_LIST = "OmnichannelIntList"

# Properties (seed 001).
UNIQUE_ID = "UniqueID"
PARTITION_GUID = "PartitionGUID"
TEL_SYS_ID = "TelSysID"
PART_ID_IN_TEL_SYS = "PartIDInTelSys"
INTEGRATION_TYPE = "IntegrationType"
DESCRIPTION = "Description"
COMMS_ENABLED = "CommsEnabled"
OMNICHANNEL_INT_FIELDS = "OmniChannelIntFields"
API_COMMUNICATION_SETTINGS = "APICommunicationSettings"
ADVANCED = "Advanced"

# Properties that live inside the APICommunicationSettings container (seed 001).
API_COMMUNICATION_PROPERTIES = frozenset(
    {
        "IPAddress1",
        "IPAddress2",
        "TCPPort1",
        "TCPPort2",
        "UseSSLTLS1",
        "UseSSLTLS2",
        "AuthUserID1",
        "AuthUserID2",
        "AuthPassword1",
        "AuthPassword2",
        COMMS_ENABLED,
    }
)
ADVANCED_PROPERTIES = frozenset(
    {
        "APICommsLoggingEnabled",
        "APICommsLoggingIncClassNames",
        "InternalDiagDumpEnabled",
    }
)

# LiveChat credentials and the Advanced flags, as the seed's LiveChat examples send them.
AUTH_USER_ID1 = "AuthUserID1"
AUTH_PASSWORD1 = "AuthPassword1"
AUTH_PASSWORD2 = "AuthPassword2"
API_COMMS_LOGGING_ENABLED = "APICommsLoggingEnabled"
API_COMMS_LOGGING_INC_CLASS_NAMES = "APICommsLoggingIncClassNames"
INTERNAL_DIAG_DUMP_ENABLED = "InternalDiagDumpEnabled"

# The fields our List requests ask for. By default List returns only IntegrationType and
# Description (seed 001); whether Akixi returns UniqueID when asked is untested, so our
# entries are recognised by their Description tag and by UniqueID only when it comes back.
LIST_FIELDS = (UNIQUE_ID, PARTITION_GUID, TEL_SYS_ID, PART_ID_IN_TEL_SYS, COMMS_ENABLED)

# The CreateSession answer's and the Authenticate payload's names are settings
# (BRIDGE_AKIXI_SESSION_ID_NAME, _NONCE_NAME, _AUTH_USER_PROPERTY, _AUTH_PASSWORD_PROPERTY):
# they were cut off in the readable docs (docs/akixi-contract.md §3).

TRUE = "True"
FALSE = "False"

# An OperationPayload: a str value is a <Property>, a dict value a named <Container>.
Payload = dict[str, Any]


def akixi_bool(value: bool) -> str:
    return TRUE if value else FALSE


def parse_akixi_bool(value: str | None) -> bool | None:
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    return None


@dataclass(frozen=True)
class AkixiSession:
    session_id: str
    nonce: str


@dataclass(frozen=True)
class OmnichannelEntry:
    """One Omnichannel Integration entry as Info or List returned it."""

    unique_id: str | None
    integration_type: str | None
    description: str | None
    partition_guid: str | None
    tel_sys_id: str | None
    part_id_in_tel_sys: str | None
    comms_enabled: bool | None
    properties: Payload = field(default_factory=dict)

    @classmethod
    def from_properties(cls, properties: Payload) -> OmnichannelEntry:
        comms = properties.get(API_COMMUNICATION_SETTINGS)
        comms_value = comms.get(COMMS_ENABLED) if isinstance(comms, dict) else None
        # Tolerate a flat CommsEnabled too: the List response shape is only one example.
        if comms_value is None and isinstance(properties.get(COMMS_ENABLED), str):
            comms_value = properties[COMMS_ENABLED]

        def text(name: str) -> str | None:
            value = properties.get(name)
            return value if isinstance(value, str) else None

        return cls(
            unique_id=text(UNIQUE_ID),
            integration_type=text(INTEGRATION_TYPE),
            description=text(DESCRIPTION),
            partition_guid=text(PARTITION_GUID),
            tel_sys_id=text(TEL_SYS_ID),
            part_id_in_tel_sys=text(PART_ID_IN_TEL_SYS),
            comms_enabled=parse_akixi_bool(comms_value),
            properties=properties,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "unique_id": self.unique_id,
            "integration_type": self.integration_type,
            "description": self.description,
            "partition_guid": self.partition_guid,
            "tel_sys_id": self.tel_sys_id,
            "part_id_in_tel_sys": self.part_id_in_tel_sys,
            "comms_enabled": self.comms_enabled,
        }
