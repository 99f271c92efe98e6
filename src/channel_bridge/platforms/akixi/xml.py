"""Akixi WS XML: requests built with ElementTree, responses read only through defusedxml.

Request shape (seed 001):
    <Request Operation="OmnichannelIntList">
        <InvokeID>00036</InvokeID>
        <SessionID>…</SessionID>
        <Offset>100</Offset> <Limit>20</Limit>            (List only)
        <OperationPayload>
            <Property Name="…">…</Property>
            <Container Name="…"><Property Name="…">…</Property></Container>
        </OperationPayload>
    </Request>
Response: <Response Result="Success|Fail"><InvokeID>…</InvokeID>[<Success>…</Success>]</Response>.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import defusedxml
import defusedxml.ElementTree as SafeET

from channel_bridge.ops.logging import redact_text
from channel_bridge.platforms.akixi.schemas import Payload

# A full List page of 1000 entries is a few hundred KB; anything far larger is not Akixi.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
EXCERPT_CHARS = 2048

_FIVE_DIGITS = re.compile(r"(?<!\d)(\d{5})(?!\d)")
_MESSAGE_NAME = re.compile(r"message|description", re.IGNORECASE)
# Values that must never reach a log or an attempt row, whatever element carries them.
_SECRET_PROPERTY = re.compile(
    r"(<Property\s+Name=\"[^\"]*(?:Password|Nonce|SessionID)[^\"]*\"\s*>)([^<]*)(</Property>)",
    re.IGNORECASE,
)
_SECRET_ELEMENT = re.compile(r"(<(SessionID|Nonce)>)([^<]*)(</\2>)", re.IGNORECASE)


class UnsafeXml(Exception):
    """The document declares a DTD, entities or external references."""


class MalformedXml(Exception):
    """The document is not well-formed XML, or not an Akixi <Response>."""


@dataclass
class AkixiResponse:
    result: str
    invoke_id: str | None
    # Properties of the single-entry body (Info, CreateSession): <Success> or <OperationPayload>.
    properties: Payload = field(default_factory=dict)
    # One dict per unnamed <Container> under <Success> (List).
    entries: list[Payload] = field(default_factory=list)
    # Leaf elements by tag (first wins), e.g. a bare <SessionID> or <Nonce> element.
    fields: dict[str, str] = field(default_factory=dict)
    fail_code: int | None = None
    fail_message: str | None = None

    def value(self, name: str) -> str | None:
        """A value given either as <Property Name="name"> or as a <name> element."""
        found = self.properties.get(name)
        if isinstance(found, str) and found:
            return found
        return self.fields.get(name) or None

    @property
    def ok(self) -> bool:
        return self.result == "Success"


def build_request(
    operation: str,
    *,
    invoke_id: str,
    session_id: str | None = None,
    payload: Payload | None = None,
    offset: int | None = None,
    limit: int | None = None,
) -> bytes:
    """The UTF-8 bytes of one <Request> document (ElementTree escapes every value)."""
    root = ET.Element("Request", {"Operation": operation})
    ET.SubElement(root, "InvokeID").text = invoke_id
    if session_id is not None:
        ET.SubElement(root, "SessionID").text = session_id
    if offset is not None:
        ET.SubElement(root, "Offset").text = str(offset)
    if limit is not None:
        ET.SubElement(root, "Limit").text = str(limit)
    if payload is not None:
        _append_items(ET.SubElement(root, "OperationPayload"), payload)
    return ET.tostring(root, encoding="unicode").encode("utf-8")


def _append_items(parent: ET.Element, items: Payload) -> None:
    for name, value in items.items():
        if isinstance(value, dict):
            _append_items(ET.SubElement(parent, "Container", {"Name": name}), value)
        else:
            ET.SubElement(parent, "Property", {"Name": name}).text = str(value)


def parse_document(body: bytes) -> ET.Element:
    """Parse untrusted XML: no DTD, no entity expansion, no external references."""
    if len(body) > MAX_RESPONSE_BYTES:
        raise MalformedXml(f"document larger than {MAX_RESPONSE_BYTES} bytes")
    try:
        return SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as exc:
        raise UnsafeXml(type(exc).__name__) from None
    except ET.ParseError as exc:
        raise MalformedXml(f"not well-formed XML: {exc}") from None


def read_items(element: ET.Element) -> Payload:
    """Properties and named Containers of an element, as nested dicts."""
    items: Payload = {}
    for child in element:
        name = child.get("Name")
        if child.tag == "Property" and name:
            items[name] = (child.text or "").strip()
        elif child.tag == "Container" and name:
            items[name] = read_items(child)
    return items


def parse_response(body: bytes) -> AkixiResponse:
    """An Akixi <Response>; a Fail's code and message are found defensively."""
    root = parse_document(body)
    echoed = root.tag == "Request" and root.find("OperationPayload") is not None
    if echoed and root.get("Result") is None:
        # The Info response is printed as an echoed <Request> (seed 001); if Akixi really
        # answers that way, it is a success carrying the properties.
        result = "Success"
    elif root.tag != "Response":
        raise MalformedXml(f"expected <Response>, got <{root.tag}>")
    else:
        result = (root.get("Result") or "").strip()
    if result not in ("Success", "Fail"):
        raise MalformedXml(f"unknown Result {result!r}")
    invoke = root.find("InvokeID")
    response = AkixiResponse(
        result=result,
        invoke_id=(invoke.text or "").strip() if invoke is not None else None,
    )
    for element in root.iter():
        if element.tag not in ("Property", "Container") and len(element) == 0 and element.text:
            response.fields.setdefault(element.tag, element.text.strip())
    if result == "Fail":
        response.fail_code, response.fail_message = _fail_details(root)
        return response
    # The Info example prints its properties under <OperationPayload> (a doc bug, seed 001);
    # everything else answers under <Success>. Accept both.
    for body_tag in ("Success", "OperationPayload"):
        section = root.find(body_tag)
        if section is None:
            continue
        response.properties.update(read_items(section))
        for container in section.findall("Container"):
            if not container.get("Name"):
                response.entries.append(read_items(container))
    return response


def _fail_details(root: ET.Element) -> tuple[int | None, str | None]:
    """First 5-digit code in anything named like *Code*, and the text of a *Message*/*Description*.

    The Fail body's element names are not published (docs/akixi-contract.md §4.1), so
    elements, `<Property Name="…">` and attributes are all searched, in document order.
    """
    code: int | None = None
    message: str | None = None
    for element in root.iter():
        label = element.get("Name") if element.tag in ("Property", "Container") else element.tag
        label = label or ""
        text = (element.text or "").strip()
        if code is None and "code" in label.lower():
            match = _FIVE_DIGITS.search(text)
            if match:
                code = int(match.group(1))
        if message is None and _MESSAGE_NAME.search(label) and text:
            message = text
        for attribute, value in element.attrib.items():
            if code is None and "code" in attribute.lower():
                match = _FIVE_DIGITS.search(value)
                if match:
                    code = int(match.group(1))
            if message is None and _MESSAGE_NAME.search(attribute) and value.strip():
                message = value.strip()
    return code, message


def masked_excerpt(
    body: bytes | str, limit: int = EXCERPT_CHARS, *, secret_names: Iterable[str] = ()
) -> str:
    """At most `limit` characters of a body, with session ids, nonces and passwords masked.

    `secret_names`: further property or element names whose values are masked (the session
    names are settings, so they need not contain "Password", "Nonce" or "SessionID").
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = _SECRET_PROPERTY.sub(r"\1***\3", text)
    text = _SECRET_ELEMENT.sub(r"\1***\4", text)
    names = "|".join(re.escape(name) for name in secret_names if name)
    if names:
        text = re.sub(
            rf"(<Property\s+Name=\"(?:{names})\"\s*>)([^<]*)(</Property>)", r"\1***\3", text
        )
        text = re.sub(rf"(<({names})>)([^<]*)(</\2>)", r"\1***\4", text)
    return redact_text(text)[:limit]


def describe(items: Any) -> Any:
    """A payload for logs: password-like properties masked."""
    if isinstance(items, dict):
        return {
            key: ("***" if "password" in key.lower() else describe(value))
            for key, value in items.items()
        }
    return items
