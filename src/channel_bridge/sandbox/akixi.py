"""An Akixi Web Services simulator: the documented XML (seed 001) plus our documented choices.

What is documented is copied exactly: `<Request Operation>` with `<InvokeID>`, `<SessionID>`,
`<Offset>`/`<Limit>` and `<OperationPayload>`; `<Response Result="Success|Fail">`; the
Omnichannel operations and properties; "no delete while CommsEnabled is True"; a failed
Authenticate wiping the session. What is not documented follows docs/akixi-contract.md and
is marked SYNTHETIC: the Fail body's element names, the meaning of 10301/10302/10307/12000/
12002/12003, the CreateSession/Authenticate property names and the password scheme.

Used in-process (httpx.ASGITransport) by tests, the demo and sandbox mode.
"""

from __future__ import annotations

import random
import secrets
import xml.etree.ElementTree as ET
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import defusedxml
import defusedxml.ElementTree as SafeET
import httpx
from fastapi import FastAPI, Request, Response
from pydantic import SecretStr

from channel_bridge.platforms.akixi import schemas as ax
from channel_bridge.platforms.akixi.password import DEFAULT_DIGEST_INPUT, password_digest
from channel_bridge.settings import Settings

# The seed's own example values, so sandbox entries look like the documentation's.
SEED_PARTITION_GUID = "f850b6719f95d98f:79b51bff:149bc2efbcb:-7e08"
SEED_TEL_SYS_ID = "100100"
SEED_PART_ID_IN_TEL_SYS = "2"

SANDBOX_URL = "http://akixi.sandbox/CCS/WS"
SANDBOX_USER = "sandbox-akixi-admin"
SANDBOX_PASSWORD = "sandbox-akixi-password-0001"

# SYNTHETIC messages: Akixi documents messages for 10000-10105 only.
MESSAGES = {
    10101: "Invoke ID not specified in request",
    10102: "Operation missing or unsupported",
    10104: "Database data unavailable; retry in a few minutes",
    10301: "Session is invalid or unknown",
    10302: "Session has expired",
    10305: "Session is not authenticated",
    10307: "Invalid user credentials",
    10514: "Operation not permitted for this user",
    11013: "Telephony Server not found or not accessible",
    11131: "Partition not found or not accessible",
    12000: "Omnichannel Integration entry with this UniqueID already exists",
    12001: "UniqueID not specified",
    12002: "Omnichannel Integration entry not found",
    12003: "Cannot delete an Omnichannel Integration entry while CommsEnabled is True",
    12004: "Invalid Omnichannel Integration property",
}
INTEGRATION_TYPES = ("POP3 SMTP", "LiveChat")
CONTAINER_OF = {
    **dict.fromkeys(ax.API_COMMUNICATION_PROPERTIES, ax.API_COMMUNICATION_SETTINGS),
    **dict.fromkeys(ax.ADVANCED_PROPERTIES, ax.ADVANCED),
}
LIST_DEFAULT_FIELDS = ("IntegrationType", "Description")
SESSION_FREE = ("CreateSession",)


@dataclass(frozen=True)
class SimulatedPartition:
    guid: str
    tel_sys_id: str
    part_id_in_tel_sys: str


@dataclass
class SimulatedCall:
    """One request the simulator received (passwords masked)."""

    operation: str | None
    invoke_id: str | None
    session_id: str | None
    payload: dict[str, Any]
    result: str  # Success | Fail | HTTP 503
    code: int | None = None
    offset: int | None = None
    limit: int | None = None
    content_type: str | None = None


@dataclass
class _Session:
    nonce: str
    authenticated: bool = False
    expired: bool = False


class _Fail(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class AkixiSimulator:
    user: str = SANDBOX_USER
    password: str = SANDBOX_PASSWORD
    password_scheme: str = "sha256-nonce"
    password_digest_input: str = DEFAULT_DIGEST_INPUT
    password_digest_encoding: str = "hex"
    # SYNTHETIC names (docs/akixi-contract.md §3), the same settings the client reads.
    session_id_name: str = "SessionID"
    nonce_name: str = "Nonce"
    user_property: str = "UserID"
    password_property: str = "Password"
    # False answers List as the seed's example does: no UniqueID, even when asked for.
    list_unique_ids: bool = True
    # False refuses an Add that sets UniqueID (seed 001: only the system-wide administrator
    # may), with 10514, a permissions code (SYNTHETIC meaning).
    accepts_unique_id: bool = True
    partitions: list[SimulatedPartition] = field(
        default_factory=lambda: [
            SimulatedPartition(SEED_PARTITION_GUID, SEED_TEL_SYS_ID, SEED_PART_ID_IN_TEL_SYS)
        ]
    )
    # Where Info puts the properties: "Success", or "OperationPayload" as the seed's example prints.
    info_section: str = "Success"
    seed: int = 0
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: list[SimulatedCall] = field(default_factory=list)
    # Fault injection: down -> HTTP 503; error_rate -> share of Fail 10104 (DB unavailable).
    down: bool = False
    error_rate: float = 0.0
    _sessions: dict[str, _Session] = field(default_factory=dict)
    _fail_next: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    # --- test controls ------------------------------------------------------------------

    def expire_sessions(self) -> None:
        """Every open session times out: its next use answers 10302."""
        for session in self._sessions.values():
            session.expired = True

    def fail_next(self, operation: str, code: int, times: int = 1) -> None:
        """The next `times` calls of `operation` answer Fail `code`."""
        self._fail_next.setdefault(operation, []).extend([code] * times)

    def operations(self, *, include_session: bool = False) -> list[str]:
        """Operations received, in order (CreateSession/Authenticate left out unless asked)."""
        return [
            call.operation or ""
            for call in self.log
            if include_session or call.operation not in ("CreateSession", "Authenticate")
        ]

    def calls(self, operation: str) -> list[SimulatedCall]:
        return [call for call in self.log if call.operation == operation]

    def add_entry(
        self,
        unique_id: str,
        *,
        description: str,
        comms_enabled: bool = True,
        integration_type: str = "LiveChat",
        partition: SimulatedPartition | None = None,
    ) -> None:
        """Seed an entry directly (as if added in the Akixi web app)."""
        partition = partition or self.partitions[0]
        self.entries[unique_id] = {
            "UniqueID": unique_id,
            "PartitionGUID": partition.guid,
            "TelSysID": partition.tel_sys_id,
            "PartIDInTelSys": partition.part_id_in_tel_sys,
            "IntegrationType": integration_type,
            "Description": description,
            "APICommunicationSettings": {"CommsEnabled": "True" if comms_enabled else "False"},
        }

    # --- the endpoint ---------------------------------------------------------------------

    def handle(self, body: bytes, *, content_type: str | None = None) -> tuple[int, bytes]:
        """One HTTP exchange: (status, response body)."""
        try:
            root = SafeET.fromstring(body, forbid_dtd=True)
        except (defusedxml.DefusedXmlException, ET.ParseError):
            self.log.append(
                SimulatedCall(None, None, None, {}, "Fail", 10102, content_type=content_type)
            )
            return 200, self._fail_body(None, 10102)
        operation = root.get("Operation") if root.tag == "Request" else None
        invoke_id = _child_text(root, "InvokeID")
        session_id = _child_text(root, "SessionID")
        payload_element = root.find("OperationPayload")
        payload = _read_items(payload_element) if payload_element is not None else {}
        call = SimulatedCall(
            operation,
            invoke_id,
            session_id,
            _masked(payload),
            "Success",
            offset=_int_or_none(_child_text(root, "Offset")),
            limit=_int_or_none(_child_text(root, "Limit")),
            content_type=content_type,
        )
        self.log.append(call)
        if self.down:
            call.result = "HTTP 503"
            return 503, b"<html><body>503 Service Unavailable</body></html>"
        try:
            if not operation:
                raise _Fail(10102)
            if not invoke_id:
                raise _Fail(10101)
            if self._fail_next.get(operation):
                raise _Fail(self._fail_next[operation].pop(0))
            if self.error_rate and self._random.random() < self.error_rate:
                raise _Fail(10104)
            success = self._dispatch(operation, session_id, payload, call)
        except _Fail as fail:
            call.result, call.code = "Fail", fail.code
            return 200, self._fail_body(invoke_id, fail.code)
        response = ET.Element("Response", {"Result": "Success"})
        ET.SubElement(response, "InvokeID").text = invoke_id
        if success is not None:
            response.append(success)
        return 200, ET.tostring(response, encoding="unicode").encode("utf-8")

    def _dispatch(
        self, operation: str, session_id: str | None, payload: dict[str, Any], call: SimulatedCall
    ) -> ET.Element | None:
        if operation == "CreateSession":
            return self._create_session()
        session = self._session(session_id)
        if operation == "Authenticate":
            self._authenticate(session_id or "", session, payload)
            return None
        if not session.authenticated:
            raise _Fail(10305)
        handlers = {
            "OmnichannelIntAdd": self._add,
            "OmnichannelIntChange": self._change,
            "OmnichannelIntDelete": self._delete,
            "OmnichannelIntInfo": self._info,
        }
        if operation == "OmnichannelIntList":
            return self._list(
                payload, offset=call.offset or 0, limit=1000 if call.limit is None else call.limit
            )
        handler = handlers.get(operation)
        if handler is None:
            raise _Fail(10102)
        return handler(payload)

    # --- session ---------------------------------------------------------------------------

    def _create_session(self) -> ET.Element:
        session_id = secrets.token_hex(16).upper()
        nonce = secrets.token_hex(16)
        self._sessions[session_id] = _Session(nonce=nonce)
        success = ET.Element("Success")
        ET.SubElement(success, "Property", {"Name": self.session_id_name}).text = session_id
        ET.SubElement(success, "Property", {"Name": self.nonce_name}).text = nonce
        return success

    def _session(self, session_id: str | None) -> _Session:
        session = self._sessions.get(session_id or "")
        if session is None:
            raise _Fail(10301)
        if session.expired:
            del self._sessions[session_id or ""]
            raise _Fail(10302)
        return session

    def _authenticate(self, session_id: str, session: _Session, payload: dict[str, Any]) -> None:
        expected = password_digest(
            self.password_scheme,
            nonce=session.nonce,
            password=self.password,
            user=self.user,
            digest_input=self.password_digest_input,
            encoding=self.password_digest_encoding,
        )
        given = payload.get(self.password_property)
        valid = isinstance(given, str) and secrets.compare_digest(given, expected)
        if payload.get(self.user_property) != self.user or not valid:
            # Documented: a failed Authenticate clears the session and its nonce.
            del self._sessions[session_id]
            raise _Fail(10307)
        session.authenticated = True

    # --- Omnichannel Integration entries ------------------------------------------------------

    def _partition(
        self, payload: dict[str, Any], *, required: bool = True
    ) -> SimulatedPartition | None:
        guid = payload.get("PartitionGUID")
        if guid:  # documented: a PartitionGUID makes TelSysID/PartIDInTelSys ignored
            for partition in self.partitions:
                if partition.guid == guid:
                    return partition
            raise _Fail(11131)
        tel_sys, part = payload.get("TelSysID"), payload.get("PartIDInTelSys")
        if not tel_sys and not part:
            if required:
                raise _Fail(11131)
            return None
        if not any(partition.tel_sys_id == tel_sys for partition in self.partitions):
            raise _Fail(11013)
        for partition in self.partitions:
            if partition.tel_sys_id == tel_sys and partition.part_id_in_tel_sys == part:
                return partition
        raise _Fail(11131)

    def _add(self, payload: dict[str, Any]) -> None:
        partition = self._partition(payload)
        assert partition is not None
        if payload.get("IntegrationType") not in INTEGRATION_TYPES:
            raise _Fail(12004)
        if payload.get("UniqueID") and not self.accepts_unique_id:
            raise _Fail(10514)
        unique_id = payload.get("UniqueID") or _generated_unique_id()
        if unique_id in self.entries:
            raise _Fail(12000)
        entry: dict[str, Any] = {
            "UniqueID": unique_id,
            "PartitionGUID": partition.guid,
            "TelSysID": partition.tel_sys_id,
            "PartIDInTelSys": partition.part_id_in_tel_sys,
            "IntegrationType": payload["IntegrationType"],
            "Description": payload.get("Description", ""),
            "APICommunicationSettings": {"CommsEnabled": "False"},
        }
        _merge(
            entry,
            {
                k: v
                for k, v in payload.items()
                if k not in ("UniqueID", "PartitionGUID", "TelSysID", "PartIDInTelSys")
            },
        )
        self.entries[unique_id] = entry

    def _existing(self, payload: dict[str, Any]) -> dict[str, Any]:
        unique_id = payload.get("UniqueID")
        if not unique_id:
            raise _Fail(12001)
        entry = self.entries.get(unique_id)
        if entry is None:
            raise _Fail(12002)
        return entry

    def _change(self, payload: dict[str, Any]) -> None:
        entry = self._existing(payload)
        if "IntegrationType" in payload:  # read-only after creation (seed 001)
            raise _Fail(12004)
        changes = {k: v for k, v in payload.items() if k != "UniqueID"}
        if any(k in changes for k in ("PartitionGUID", "TelSysID", "PartIDInTelSys")):
            partition = self._partition(changes)
            assert partition is not None
            changes.update(
                PartitionGUID=partition.guid,
                TelSysID=partition.tel_sys_id,
                PartIDInTelSys=partition.part_id_in_tel_sys,
            )
        _merge(entry, changes)

    def _delete(self, payload: dict[str, Any]) -> None:
        entry = self._existing(payload)
        if entry.get("APICommunicationSettings", {}).get("CommsEnabled") == "True":
            raise _Fail(12003)
        del self.entries[entry["UniqueID"]]

    def _info(self, payload: dict[str, Any]) -> ET.Element:
        entry = self._existing(payload)
        section = ET.Element(self.info_section)
        _append_items(section, entry)
        return section

    def _list(self, payload: dict[str, Any], *, offset: int, limit: int) -> ET.Element:
        partition = self._partition(payload)
        requested = [
            name.strip()
            for name in (payload.get("OmniChannelIntFields") or "").split(",")
            if name.strip()
        ]
        extra = [
            name
            for name in requested
            if name not in LIST_DEFAULT_FIELDS and (self.list_unique_ids or name != "UniqueID")
        ]
        fields = [*LIST_DEFAULT_FIELDS, *extra]
        in_scope = [
            entry
            for entry in self.entries.values()
            if partition is None or entry["PartitionGUID"] == partition.guid
        ]
        success = ET.Element("Success")
        for entry in in_scope[offset : offset + limit]:
            shown: dict[str, Any] = {}
            for name in fields:
                container = CONTAINER_OF.get(name)
                if container:
                    value = entry.get(container, {}).get(name)
                    if value is not None:
                        shown.setdefault(container, {})[name] = value
                elif name in entry:
                    shown[name] = entry[name]
            _append_items(ET.SubElement(success, "Container"), shown)
        return success

    # --- bodies ------------------------------------------------------------------------------

    @staticmethod
    def _fail_body(invoke_id: str | None, code: int) -> bytes:
        # SYNTHETIC: the real Fail element names are not published (docs/akixi-contract.md §4.1).
        response = ET.Element("Response", {"Result": "Fail"})
        if invoke_id:
            ET.SubElement(response, "InvokeID").text = invoke_id
        fail = ET.SubElement(response, "Fail")
        ET.SubElement(fail, "ErrorCode").text = str(code)
        ET.SubElement(fail, "ErrorMessage").text = MESSAGES.get(code, "Error")
        return ET.tostring(response, encoding="unicode").encode("utf-8")


def _child_text(element: ET.Element, tag: str) -> str | None:
    child = element.find(tag)
    return (child.text or "").strip() if child is not None else None


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _read_items(element: ET.Element) -> dict[str, Any]:
    items: dict[str, Any] = {}
    for child in element:
        name = child.get("Name")
        if child.tag == "Property" and name:
            items[name] = (child.text or "").strip()
        elif child.tag == "Container" and name:
            items[name] = _read_items(child)
    return items


def _append_items(parent: ET.Element, items: dict[str, Any]) -> None:
    for name, value in items.items():
        if isinstance(value, dict):
            _append_items(ET.SubElement(parent, "Container", {"Name": name}), value)
        else:
            ET.SubElement(parent, "Property", {"Name": name}).text = str(value)


def _merge(target: dict[str, Any], changes: dict[str, Any]) -> None:
    for name, value in changes.items():
        if isinstance(value, dict):
            _merge(target.setdefault(name, {}), value)
        else:
            target[name] = value


def _masked(items: dict[str, Any]) -> dict[str, Any]:
    return {
        name: _masked(value)
        if isinstance(value, dict)
        else ("***" if "password" in name.lower() else value)
        for name, value in items.items()
    }


def _generated_unique_id() -> str:
    # Akixi's own ids look like "8789a59d877f5edd:4f6f3fbd:1722c661a1d:-7fad" (seed 001).
    parts = (secrets.token_hex(8), secrets.token_hex(4), secrets.token_hex(6)[:11])
    return f"{':'.join(parts)}:-{secrets.token_hex(2)}"


def create_akixi_simulator(simulator: AkixiSimulator | None = None, **options: Any) -> FastAPI:
    """A FastAPI app answering Akixi WS requests on any path; the state is `app.state.simulator`."""
    simulator = simulator or AkixiSimulator(**options)
    app = FastAPI(title="Akixi WS simulator", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.simulator = simulator

    @app.post("/{path:path}")
    async def _endpoint(path: str, request: Request) -> Response:
        status, body = simulator.handle(
            await request.body(), content_type=request.headers.get("content-type")
        )
        headers = {"Retry-After": "30"} if status == 503 else None
        media_type = "text/html" if status == 503 else "text/xml; charset=UTF-8"
        return Response(body, status_code=status, media_type=media_type, headers=headers)

    return app


def sandbox_settings(settings: Settings) -> Settings:
    """The settings with the simulator's URL, credentials and partition filled in where unset."""
    updates: dict[str, Any] = {"akixi_url": SANDBOX_URL}
    if not settings.akixi_user:
        updates["akixi_user"] = SANDBOX_USER
    if settings.akixi_password is None:
        updates["akixi_password"] = SecretStr(SANDBOX_PASSWORD)
    if not (settings.akixi_partition_guid or settings.akixi_telsys_id):
        updates["akixi_partition_guid"] = SEED_PARTITION_GUID
    return settings.model_copy(update=updates)


async def start_akixi_sandbox(
    settings: Settings, stack: AsyncExitStack
) -> tuple[AkixiSimulator, Settings, httpx.AsyncClient]:
    """An in-process simulator and an HTTP client bound to it (closed with the stack)."""
    client_settings = sandbox_settings(settings)
    password = client_settings.akixi_password
    partition = SimulatedPartition(
        client_settings.akixi_partition_guid or SEED_PARTITION_GUID,
        client_settings.akixi_telsys_id or SEED_TEL_SYS_ID,
        client_settings.akixi_part_id_in_telsys or SEED_PART_ID_IN_TEL_SYS,
    )
    simulator = AkixiSimulator(
        user=client_settings.akixi_user or SANDBOX_USER,
        password=password.get_secret_value() if password else SANDBOX_PASSWORD,
        password_scheme=client_settings.akixi_password_scheme,
        password_digest_input=client_settings.akixi_password_digest_input,
        password_digest_encoding=client_settings.akixi_password_digest_encoding,
        session_id_name=client_settings.akixi_session_id_name,
        nonce_name=client_settings.akixi_nonce_name,
        user_property=client_settings.akixi_auth_user_property,
        password_property=client_settings.akixi_auth_password_property,
        partitions=[partition],
    )
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_akixi_simulator(simulator)),
        timeout=settings.http_timeout_s,
    )
    stack.push_async_callback(http.aclose)
    return simulator, client_settings, http
