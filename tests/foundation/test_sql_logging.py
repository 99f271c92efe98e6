"""At BRIDGE_LOG_LEVEL=DEBUG the SQL loggers stay at WARNING: their statement parameters are
raw webhook bodies. Named in BRIDGE_LOG_LEVELS, a logger gets the level asked for."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
import structlog

from channel_bridge.app import create_app
from tests.conftest import make_settings, running_app

QUIET = ("sqlalchemy", "aiosqlite", "asyncpg")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    names = [n for n in logging.root.manager.loggerDict if n.startswith(QUIET)]
    saved = (root.handlers[:], root.level, structlog.get_config())
    levels = {name: logging.getLogger(name).level for name in (*QUIET, *names)}
    try:
        yield
    finally:
        root.handlers, root.level = saved[0], saved[1]
        structlog.configure(**saved[2])
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


async def accept_marked_body(settings) -> str:
    marker = f"raw-webhook-body-{uuid.uuid4().hex}"
    async with running_app(settings) as (app, _client):
        await app.state_now.inbox.accept(
            source="test", external_id=marker, payload={"text": marker}, raw_body=marker
        )
    return marker


async def test_debug_logging_keeps_sql_parameters_out_of_the_log(
    database_url, engine, capfd, restore_logging
) -> None:
    settings = make_settings(database_url, log_level="DEBUG")
    marker = await accept_marked_body(settings)
    logging.getLogger("channel_bridge.test").debug("debug lines are written")
    err = capfd.readouterr().err
    assert "debug lines are written" in err
    assert marker not in err
    for name in QUIET:
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING


async def test_a_logger_named_in_log_levels_gets_its_level(
    database_url, engine, capfd, restore_logging
) -> None:
    settings = make_settings(database_url, log_levels={"sqlalchemy.engine": "INFO"})
    marker = await accept_marked_body(settings)
    assert marker in capfd.readouterr().err  # asked for by name: statements and parameters
    # Configured again without it, the earlier choice does not linger.
    create_app(make_settings(database_url))
    assert logging.getLogger("sqlalchemy.engine").getEffectiveLevel() == logging.WARNING
