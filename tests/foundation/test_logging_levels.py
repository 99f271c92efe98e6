"""A log call below the configured level costs a level check: no processor runs for it. At or
above the level, every processor runs and the line is written."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from channel_bridge.ops.logging import LevelCheckedLogger, configure_logging, get_logger


@pytest.fixture
def processed() -> Iterator[list[str]]:
    """The events that reached the processor chain (its first step records them)."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, structlog.get_config())
    seen: list[str] = []

    def record(logger: Any, method: str, event_dict: Any) -> Any:
        seen.append(f"{method}:{event_dict['event']}")
        return event_dict

    try:
        configure_logging(level="WARNING", fmt="json")
        config = structlog.get_config()
        structlog.configure(processors=[record, *config["processors"]])
        yield seen
    finally:
        root.handlers, root.level = saved[0], saved[1]
        structlog.configure(**saved[2])


def test_calls_below_the_level_never_reach_the_processors(processed, capfd) -> None:
    log = get_logger("channel_bridge.test_levels")
    assert isinstance(log.bind(), LevelCheckedLogger)

    log.debug("quiet debug", payload={"big": "x" * 100})
    log.info("quiet info")
    log.warning("loud warning")
    log.error("loud error")

    assert processed == ["warning:loud warning", "error:loud error"]
    output = capfd.readouterr().err + capfd.readouterr().out
    assert "quiet" not in output


def test_a_logger_named_at_a_lower_level_still_logs_info(processed, capfd) -> None:
    logging.getLogger("channel_bridge.chatty").setLevel(logging.INFO)
    try:
        get_logger("channel_bridge.chatty").info("heard")
        get_logger("channel_bridge.other").info("not heard")
    finally:
        logging.getLogger("channel_bridge.chatty").setLevel(logging.NOTSET)
    assert processed == ["info:heard"]
