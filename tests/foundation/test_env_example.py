""".env.example documents every setting, with its real default, and cannot drift from Settings."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from dotenv import dotenv_values
from pydantic import SecretStr

from channel_bridge.settings import Settings
from tests.foundation.conftest import REPO

ENV_EXAMPLE = REPO / ".env.example"
LINE = re.compile(r"^(?P<commented>#\s*)?(?P<name>BRIDGE_[A-Z0-9_]+)=(?P<value>.*)$")


@dataclass(frozen=True)
class Entry:
    name: str
    value: str
    commented: bool
    comment: str


def entries() -> list[Entry]:
    found = []
    comment: list[str] = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = LINE.match(line)
        if match:
            found.append(
                Entry(match["name"], match["value"], bool(match["commented"]), " ".join(comment))
            )
            comment = []
        elif line.startswith("#"):
            comment.append(line.lstrip("# ").strip())
        else:
            comment = []
    return found


def field_name(variable: str) -> str:
    return variable.removeprefix("BRIDGE_").lower()


def is_secret(name: str) -> bool:
    annotation = Settings.model_fields[name].annotation
    return SecretStr in getattr(annotation, "__args__", (annotation,))


def test_every_setting_is_listed_once_and_nothing_else() -> None:
    listed = [entry.name for entry in entries()]
    expected = {f"BRIDGE_{name.upper()}" for name in Settings.model_fields}
    assert len(listed) == len(set(listed)), "a setting is listed twice"
    assert set(listed) - expected == set(), "listed but not a setting (typo or removed)"
    assert expected - set(listed) == set(), "settings missing from .env.example"


def test_every_setting_has_a_comment() -> None:
    missing = [entry.name for entry in entries() if not entry.comment]
    assert not missing, f"no comment above: {missing}"


def default_of(variable: str) -> object:
    info = Settings.model_fields.get(field_name(variable))
    return info.get_default(call_default_factory=True) if info else None


# A commented line shows the default; for a setting without one (None) or a secret, an example.
DOCUMENTED_DEFAULTS = [
    e
    for e in entries()
    if e.commented and default_of(e.name) is not None and not is_secret(field_name(e.name))
]


@pytest.mark.parametrize("entry", DOCUMENTED_DEFAULTS, ids=lambda e: e.name)
def test_a_documented_default_is_the_real_default(entry: Entry, clean_bridge_env) -> None:
    name = field_name(entry.name)
    default = default_of(entry.name)
    # Parsed the way the environment is parsed (JSON for lists, "true" for booleans).
    clean_bridge_env.setenv(entry.name, entry.value)
    assert getattr(Settings(_env_file=None, _secrets_dir=None), name) == default


def test_the_example_file_loads_and_is_accepted_in_dev(clean_bridge_env) -> None:
    settings = Settings(_env_file=ENV_EXAMPLE, _secrets_dir=None)
    assert settings.env == "dev"
    assert settings.problems() == []


def test_its_secrets_are_placeholders_that_prod_refuses(clean_bridge_env) -> None:
    values = {k: v for k, v in dotenv_values(ENV_EXAMPLE).items() if k.startswith("BRIDGE_")}
    set_secrets = [k for k in values if is_secret(field_name(k))]
    required = {"BRIDGE_SECRET_KEY", "BRIDGE_ADMIN_TOKEN", "BRIDGE_AXP_CALLBACK_TOKEN"}
    assert required <= set(set_secrets)
    clean_bridge_env.setenv("BRIDGE_ENV", "prod")
    clean_bridge_env.setenv("BRIDGE_PUBLIC_BASE_URL", "https://bridge.test")
    problems = Settings(_env_file=ENV_EXAMPLE, _secrets_dir=None).problems()
    for variable in set_secrets:
        assert any(p.startswith(f"{variable} holds a placeholder") for p in problems), variable
    # The commented example secrets, once uncommented, are refused too.
    for entry in entries():
        if entry.commented and is_secret(field_name(entry.name)):
            clean_bridge_env.setenv(entry.name, entry.value)
    problems = Settings(_env_file=ENV_EXAMPLE, _secrets_dir=None).problems()
    for entry in entries():
        if is_secret(field_name(entry.name)):
            assert any(p.startswith(entry.name) for p in problems), entry.name
