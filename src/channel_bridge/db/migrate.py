"""Run alembic programmatically (CLI `migrate`, `make run`, tests)."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config


def _alembic_ini() -> Path:
    explicit = os.environ.get("BRIDGE_ALEMBIC_INI")
    candidates = [Path(explicit)] if explicit else []
    candidates += [Path.cwd() / "alembic.ini", Path(__file__).resolve().parents[3] / "alembic.ini"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "alembic.ini not found: run from the project root or set BRIDGE_ALEMBIC_INI"
    )


def alembic_config(database_url: str) -> Config:
    config = Config(str(_alembic_ini()))
    config.attributes["database_url"] = database_url
    return config


def _in_thread(fn, *args) -> None:  # type: ignore[no-untyped-def]
    # alembic's env.py calls asyncio.run(); inside a running loop it needs its own thread.
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        fn(*args)
        return
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn(*args)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def upgrade(database_url: str, revision: str = "head") -> None:
    _in_thread(command.upgrade, alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    _in_thread(command.downgrade, alembic_config(database_url), revision)


def head_revision(database_url: str) -> str:
    """The schema revision this version of the bridge runs on (alembic's single head)."""
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config(database_url)).get_heads()
    return heads[0] if len(heads) == 1 else ",".join(sorted(heads))


def is_known_revision(database_url: str, revision: str) -> bool:
    """Whether this version has `revision` among its migrations. An unknown one is newer: the
    next release migrated first, and its migrations keep this release's code working."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return (
            ScriptDirectory.from_config(alembic_config(database_url)).get_revision(revision)
            is not None
        )
    except CommandError:
        return False
