"""Reading an AXP integration lifecycle callback whose body AXP has not published.

The reader turns whatever arrived (a JSON object, an array, an empty body) into one
`IntegrationCallback` (action + integration id + the fields given) when that can be done
without guessing, and otherwise into `CallbackNeedsReview`, which lists every problem and
whatever could be read, for an operator to resolve by hand. Nothing here refuses a request:
the admin's operation in AXP fails if the callback fails, so the route stores both outcomes.

Tolerance, all listed in docs/axp-integration-callback.md:
- keys are compared without case, `_` or `-` (`accountid`, `Account_Id`, `INTEGRATION_ID`);
- the integration may sit in a nested `integration` or `data` object, in the URL path
  (`…/integrations/{id}`) or in the query string;
- the action comes from an action key (many verbs: CREATED, ADD, UPSERT, MODIFIED, REMOVED…),
  else from a status (`ACTIVE`, `DELETED`), else from a list of changes (an update), else
  from the HTTP method (DELETE, PUT, PATCH);
- two places that disagree (two integration ids, two different actions, a change list that
  contradicts a field) are never settled by preference: the callback is held.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from pydantic import StringConstraints, TypeAdapter, ValidationError

from channel_bridge.mappings.schemas import (
    STORABLE_TEXT_PATTERN,
    AccountId,
    ChannelProviderId,
    IntegrationId,
)

Action = Literal["created", "updated", "deleted"]

# Aliases, compared after `normalise_key` (lower case, letters and digits only).
ACTION_KEYS = ("event", "eventtype", "action", "type", "operation", "eventname", "changetype")
# `type` is as often the resource type ("INTEGRATION") as the action: an unknown word there
# does not block a status or a method from deciding.
RESOURCE_TYPE_KEYS = frozenset({"type"})
STATUS_KEYS = ("status", "state", "integrationstatus")
# Strong: they can only mean the integration. `id` counts only inside a nested object (or
# at the top when there is none): beside a nested object a top-level `id` is the event's.
STRONG_ID_KEYS = ("integrationid", "businessaccountname")
ID_KEYS = ("integrationid", "id", "businessaccountname")
NAME_KEYS = ("name", "integrationname")
CHANNEL_PROVIDER_KEYS = ("channelproviderid",)
ACCOUNT_KEYS = ("accountid",)
NESTED_KEYS = ("integration", "data")
CHANGE_LIST_KEYS = ("changes", "patch")
# In one change: which field, and its new value (JSON Patch `path`/`value` included).
CHANGE_FIELD_KEYS = ("field", "path", "property", "attribute", "key", "name")
CHANGE_VALUE_KEYS = ("newvalue", "value", "new", "to", "after")

ACTION_WORDS: dict[str, Action] = {
    **dict.fromkeys(("CREATED", "CREATE", "ADDED", "ADD", "NEW", "INSERTED", "INSERT"), "created"),
    # An upsert and a save are applied as an update, which also creates a missing row.
    **dict.fromkeys(
        (
            "UPDATED",
            "UPDATE",
            "UPSERTED",
            "UPSERT",
            "MODIFIED",
            "MODIFY",
            "CHANGED",
            "CHANGE",
            "EDITED",
            "EDIT",
            "PATCHED",
            "PATCH",
            "REPLACED",
            "REPLACE",
            "SAVED",
            "SAVE",
            "CREATEORUPDATE",
            "CREATEDORUPDATED",
        ),
        "updated",
    ),
    **dict.fromkeys(("DELETED", "DELETE", "REMOVED", "REMOVE"), "deleted"),
}
# A status says the integration exists (an upsert) or is gone. INACTIVE, DISABLED, PENDING
# say neither, so they are held.
STATUS_WORDS: dict[str, Action] = {"ACTIVE": "updated", "ENABLED": "updated"}
METHOD_ACTIONS: dict[str, Action] = {"DELETE": "deleted", "PUT": "updated", "PATCH": "updated"}

# Like the admin API's IntegrationName, but an empty name is "not given" here.
_NAME: TypeAdapter[str] = TypeAdapter(
    Annotated[
        str,
        StringConstraints(strip_whitespace=True, max_length=255, pattern=STORABLE_TEXT_PATTERN),
    ]
)
_INTEGRATION_ID: TypeAdapter[str] = TypeAdapter(IntegrationId)
_CHANNEL_PROVIDER_ID: TypeAdapter[str] = TypeAdapter(ChannelProviderId)
_ACCOUNT_ID: TypeAdapter[str] = TypeAdapter(AccountId)

Problem = dict[str, str]


@dataclass(frozen=True)
class IntegrationCallback:
    """A callback resolved to one change of one integration."""

    action: Action
    integration_id: str
    name: str | None = None
    account_id: str | None = None
    channel_provider_id: str | None = None


@dataclass(frozen=True)
class CallbackNeedsReview:
    """A callback that cannot be applied without a person: why, and what could be read."""

    problems: list[Problem]
    # Whatever was read validly (action, integration_id, name, account_id, channel_provider_id).
    hints: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Found:
    path: str
    value: Any


def normalise_key(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


def _word(value: str) -> str:
    word = re.sub(r"[^A-Z]", "", value.upper())
    return word.removeprefix("INTEGRATION").removesuffix("INTEGRATION")


def parse_action(value: Any) -> Action | None:
    """CREATED, add, INTEGRATION_UPSERTED, integration.deleted, IntegrationRemoved... or None."""
    if not isinstance(value, str):
        return None
    return ACTION_WORDS.get(_word(value))


def parse_status(value: Any) -> Action | None:
    """ACTIVE and ENABLED: it exists (an update that creates it if missing); DELETED: gone."""
    if not isinstance(value, str):
        return None
    return parse_action(value) or STATUS_WORDS.get(_word(value))


def callback_dedupe_key(method: str, document: Any, *, target: str = "") -> str:
    """A retry of the same callback (method, URL target, JSON) is the same event."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    request_line = f"{method} {target} {canonical}" if target else f"{method} {canonical}"
    # surrogatepass: a body with an escaped lone surrogate is still hashed, not refused.
    return "sha256:" + hashlib.sha256(request_line.encode("utf-8", "surrogatepass")).hexdigest()


def callback_target(path_integration_id: str | None, query: Mapping[str, str]) -> str:
    """What the URL adds to the body: `{id}?{sorted query}`, or "" for the bare callback URL."""
    if not path_integration_id and not query:
        return ""
    return f"{path_integration_id or ''}?{urlencode(sorted(query.items()))}"


def read_integration_callback(
    document: Any,
    *,
    method: str,
    path_integration_id: str | None = None,
    query: Mapping[str, str] | None = None,
    empty: bool = False,
    our_account_id: str | None = None,
) -> IntegrationCallback | CallbackNeedsReview:
    """The change this callback describes, or why it needs review."""
    reader = _Reader(
        document,
        method=method.upper(),
        path_integration_id=path_integration_id,
        query=dict(query or {}),
        empty=empty,
    )
    return reader.read(our_account_id=our_account_id)


class _Reader:
    def __init__(
        self,
        document: Any,
        *,
        method: str,
        path_integration_id: str | None,
        query: dict[str, str],
        empty: bool,
    ) -> None:
        self.method = method
        self.path_integration_id = path_integration_id
        self.problems: list[Problem] = []
        self.hints: dict[str, str] = {}
        self._action_path: str | None = None
        # Only a problem if the URL and the method cannot say what the body would have.
        self.body_problem: Problem | None = None
        if empty:
            self.body_problem = {"field": "body", "message": "the body is empty"}
        elif not isinstance(document, dict):
            kind = "an array" if isinstance(document, list) else f"a JSON {_json_type(document)}"
            self.body_problem = {"field": "body", "message": f"is {kind}, not an object"}
        top = document if isinstance(document, dict) else {}
        self.nested = [
            (f"body.{key}.", value)
            for alias in NESTED_KEYS
            for key, value in top.items()
            if normalise_key(key) == alias and isinstance(value, dict)
        ]
        self.top = ("body.", top)
        self.query = ("query.", query)
        # Nested objects first: they describe the integration; the top level the event.
        self.places = [*self.nested, self.top, self.query]
        self.changes = self._change_list()

    # --- the whole callback -------------------------------------------------------------

    def read(self, *, our_account_id: str | None) -> IntegrationCallback | CallbackNeedsReview:
        action = self._action()
        integration_id = self._integration_id()
        name = self._field("name", NAME_KEYS, _NAME)
        account_id = self._field("account_id", ACCOUNT_KEYS, _ACCOUNT_ID)
        channel_provider_id = self._field(
            "channel_provider_id", CHANNEL_PROVIDER_KEYS, _CHANNEL_PROVIDER_ID
        )
        if account_id and our_account_id and account_id.value != our_account_id:
            # The element points at this bridge but the integration is another account's.
            self.problems.append(
                {
                    "field": account_id.path,
                    "message": f"belongs to account {account_id.value}; this bridge serves "
                    f"{our_account_id}",
                }
            )
        if self.problems or action is None or integration_id is None:
            problems = [self.body_problem, *self.problems] if self.body_problem else self.problems
            return CallbackNeedsReview(problems, self.hints)
        return IntegrationCallback(
            action=action,
            integration_id=integration_id,
            name=(name.value or None) if name else None,
            account_id=account_id.value if account_id else None,
            channel_provider_id=channel_provider_id.value if channel_provider_id else None,
        )

    # --- the integration id -------------------------------------------------------------

    def _integration_id(self) -> str | None:
        strong: list[_Found] = []
        if self.path_integration_id:
            strong.append(_Found("path.integrationId", self.path_integration_id))
        for prefix, container in self.nested:
            strong += _matches(prefix, container, ID_KEYS)
        for prefix, container in (self.top, self.query):
            strong += _matches(prefix, container, STRONG_ID_KEYS)
        candidates = strong
        if not candidates and not self.nested:
            for prefix, container in (self.top, self.query):
                candidates += _matches(prefix, container, ("id",))
        if not candidates:
            self.problems.append(
                {
                    "field": "body.integrationId",
                    "message": "missing: give one of integrationId, id, businessAccountName "
                    "(any case; top level, inside integration{} or data{}, or in the URL)",
                }
            )
            return None
        texts = {_text(found.value) for found in candidates}
        if len(texts) > 1:
            self.problems.append(
                {
                    "field": candidates[0].path,
                    "message": "names more than one integration: "
                    + ", ".join(f"{found.path}={found.value!r}" for found in candidates),
                }
            )
            return None
        chosen = candidates[0]
        value = self._validated(chosen, _INTEGRATION_ID)
        if value is not None:
            self.hints["integration_id"] = value
        return value

    # --- name, account, channel provider ----------------------------------------------

    def _field(
        self, hint: str, aliases: tuple[str, ...], adapter: TypeAdapter[str]
    ) -> _Found | None:
        plain = self._first_place(aliases)
        changed = [found for key, found in self.changes if key in aliases]
        if changed and len({_text(f.value) for f in changed}) > 1:
            self.problems.append(
                {
                    "field": changed[0].path,
                    "message": "the change list sets it more than once",
                }
            )
            return None
        if plain and changed and _text(plain.value) != _text(changed[0].value):
            self.problems.append(
                {
                    "field": changed[0].path,
                    "message": f"the change list says {changed[0].value!r} but {plain.path} says "
                    f"{plain.value!r}",
                }
            )
            return None
        chosen = changed[0] if changed else plain
        if chosen is None:
            return None
        value = self._validated(chosen, adapter)
        if value is None:
            return None
        if value:
            self.hints[hint] = value
        return _Found(chosen.path, value)

    def _first_place(self, aliases: tuple[str, ...]) -> _Found | None:
        for prefix, container in self.places:
            found = _matches(prefix, container, aliases)
            if not found:
                continue
            by_key: dict[str, set[str]] = {}
            for item in found:
                by_key.setdefault(normalise_key(item.path.rsplit(".", 1)[-1]), set()).add(
                    _text(item.value)
                )
            if any(len(values) > 1 for values in by_key.values()):
                self.problems.append(
                    {
                        "field": found[0].path,
                        "message": "given twice with different values: "
                        + ", ".join(f"{item.path}={item.value!r}" for item in found),
                    }
                )
                return None
            return found[0]
        return None

    # --- the action ------------------------------------------------------------------------

    def _action(self) -> Action | None:
        action = self._explicit_action()
        if action is False:
            return None
        if self.method == "DELETE":
            if action not in (None, "deleted"):
                self.problems.append(
                    {
                        "field": self._action_path or "body.action",
                        "message": f"says {action!r} but the request method is DELETE",
                    }
                )
                return None
            action = "deleted"
        if action is None:
            action = self._status_action()
            if action is False:
                return None
        if action is None and self.changes:
            action = "updated"
        if action is None:
            action = METHOD_ACTIONS.get(self.method)
        if action is None:
            self.problems.append(
                {
                    "field": "body.action",
                    "message": "missing: give an action (one of event, eventType, action, type, "
                    "operation) or a status",
                }
            )
            return None
        self.hints["action"] = action
        return action

    def _explicit_action(self) -> Action | Literal[False] | None:
        """The action keys' verdict: an action, None (none given), False (held)."""
        known: list[tuple[_Found, Action]] = []
        unknown: list[_Found] = []
        for prefix, container in [self.top, *self.nested, self.query]:
            for found in _matches(prefix, container, ACTION_KEYS):
                action = parse_action(found.value)
                key = normalise_key(found.path.rsplit(".", 1)[-1])
                if action:
                    known.append((found, action))
                elif key not in RESOURCE_TYPE_KEYS and not (
                    isinstance(found.value, str) and _word(found.value) == ""
                ):
                    unknown.append(found)
        actions = {action for _found, action in known}
        if len(actions) > 1:
            self.problems.append(
                {
                    "field": known[0][0].path,
                    "message": "contradicting actions: "
                    + ", ".join(f"{found.path}={found.value!r}" for found, _ in known),
                }
            )
            return False
        if known:
            self._action_path = known[0][0].path
            return known[0][1]
        if unknown:
            self.problems.append(
                {
                    "field": unknown[0].path,
                    "message": f"unknown action {unknown[0].value!r}; known: created (CREATED, "
                    "ADD, NEW...), updated (UPDATED, UPSERT, MODIFIED...), deleted (DELETED, "
                    "REMOVED...)",
                }
            )
            return False
        return None

    def _status_action(self) -> Action | Literal[False] | None:
        statuses = [
            *self._places_matching(STATUS_KEYS),
            *(found for key, found in self.changes if key in STATUS_KEYS),
        ]
        if not statuses:
            return None
        actions = {parse_status(found.value) for found in statuses}
        if None in actions or len(actions) > 1:
            self.problems.append(
                {
                    "field": statuses[0].path,
                    "message": "the status "
                    + ", ".join(f"{found.path}={found.value!r}" for found in statuses)
                    + " does not say whether the integration exists (ACTIVE, ENABLED) or is gone "
                    "(DELETED, REMOVED)",
                }
            )
            return False
        (action,) = actions
        return action

    def _places_matching(self, aliases: tuple[str, ...]) -> list[_Found]:
        return [
            found
            for prefix, container in self.places
            for found in _matches(prefix, container, aliases)
        ]

    # --- a list of changes ----------------------------------------------------------------

    def _change_list(self) -> list[tuple[str, _Found]]:
        """(normalised field name, new value) for each change in `changes`/`patch` lists."""
        changes: list[tuple[str, _Found]] = []
        for prefix, container in [self.top, *self.nested]:
            for found in _matches(prefix, container, CHANGE_LIST_KEYS):
                if not isinstance(found.value, list):
                    continue
                for index, item in enumerate(found.value):
                    change = _one_change(f"{found.path}[{index}]", item)
                    if change is not None:
                        changes.append(change)
        return changes

    def _validated(self, found: _Found, adapter: TypeAdapter[str]) -> str | None:
        value = found.value
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            self.problems.append(
                {
                    "field": found.path,
                    "message": "; ".join(error["msg"] for error in exc.errors(include_input=False)),
                }
            )
            return None


def _one_change(path: str, item: Any) -> tuple[str, _Found] | None:
    if not isinstance(item, dict):
        return None
    if str(item.get("op", "")).lower() in ("remove", "test", "move", "copy"):
        return None  # only additions and replacements carry a new value
    fields = _matches(f"{path}.", item, CHANGE_FIELD_KEYS)
    values = _matches(f"{path}.", item, CHANGE_VALUE_KEYS)
    if not fields or not values or not isinstance(fields[0].value, str):
        return None
    target = normalise_key(fields[0].value.rsplit("/", 1)[-1])
    return target, values[0]


def _matches(prefix: str, container: Mapping[str, Any], aliases: Iterable[str]) -> list[_Found]:
    """Non-empty values under keys matching the aliases, in the aliases' order of preference."""
    found = []
    for alias in aliases:
        for key, value in container.items():
            if normalise_key(key) == alias and value is not None and value != "":
                found.append(_Found(prefix + key, value))
    return found


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    return json.dumps(value, sort_keys=True)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string"
