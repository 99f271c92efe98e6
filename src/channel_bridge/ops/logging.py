"""structlog for everything (our logs, uvicorn, SQLAlchemy), with secret redaction.

Redaction works at two levels: values of keys named like secrets are masked, and any
known secret value (settings secrets plus secrets registered at run time, such as a
decrypted channel secret) is replaced wherever it appears in a string.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

import orjson
import structlog

MASK = "***"
SENSITIVE_KEY = re.compile(
    r"(secret|password|passwd|token|authorization|api[_-]?key|apikey|appkey|signature|cookie)",
    re.IGNORECASE,
)
# At DEBUG (and SQLAlchemy's engine at INFO) these log statements with their parameters: raw
# webhook bodies, payloads. WARNING whatever the root level, unless a logger is named in
# BRIDGE_LOG_LEVELS.
QUIET_LOGGERS = ("sqlalchemy", "aiosqlite", "asyncpg")
# Keys that contain a sensitive word but hold no secret (ids, counters, flags).
_NOT_SENSITIVE = {"token_requests", "invoke_id", "signature_encoding", "signature_matched"}


class SecretRegistry:
    """The secret values to scrub from every log line (thread-safe, append-only)."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def add(self, *values: str | None) -> None:
        # Very short values would mask ordinary words; real secrets are longer.
        fresh = {v for v in values if v and len(v) >= 6} - self._values
        if not fresh:
            return
        with self._lock:
            self._values |= fresh
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def scrub(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub(MASK, text) if pattern else text

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._pattern = None


secrets = SecretRegistry()


def _redact(value: Any, depth: int = 0) -> Any:
    if depth > 6:
        return value
    if isinstance(value, str):
        return secrets.scrub(value)
    if isinstance(value, dict):
        return {
            k: (MASK if _sensitive_key(k) and v not in (None, "") else _redact(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v, depth + 1) for v in value]
    if isinstance(value, bytes):
        return secrets.scrub(value.decode("utf-8", "replace"))
    return value


def _sensitive_key(key: Any) -> bool:
    return isinstance(key, str) and key not in _NOT_SENSITIVE and bool(SENSITIVE_KEY.search(key))


def redact_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        if _sensitive_key(key) and value not in (None, ""):
            event_dict[key] = MASK
        else:
            event_dict[key] = _redact(value)
    return event_dict


def redact_exception(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The traceback `format_exc_info` just rendered: the one text the first pass never saw.

    Every other value went through `redact_processor` in the shared chain already; walking
    them all again cost about a third of each line written.
    """
    for key in ("exception", "stack"):
        value = event_dict.get(key)
        if isinstance(value, str):
            event_dict[key] = secrets.scrub(value)
    return event_dict


def _json_line(value: Any, **_options: Any) -> str:
    """A log line as JSON: orjson, with the standard library for what orjson refuses."""
    try:
        return orjson.dumps(value, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value, default=repr)


def redact_document(value: Any) -> Any:
    """A JSON-like document with sensitive keys and known secret values masked (for display)."""
    return _redact(value)


def redact_text(text: str) -> str:
    """Mask known secrets in free text (e.g. an upstream response kept in an attempt row)."""
    return secrets.scrub(text)


def _drop_color_message(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
    """uvicorn passes a copy of its message with terminal escape codes as `extra`: noise in
    JSON, and the plain message is already there."""
    event.pop("color_message", None)
    return event


# The processors every line goes through, ours and the libraries' (foreign) alike.
_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.stdlib.ExtraAdder(),
    _drop_color_message,
    redact_processor,
]


class LevelCheckedLogger(structlog.stdlib.BoundLogger):
    """structlog's stdlib logger that asks the stdlib logger first (a cached dict lookup).

    A call below the level returns at once. Through the processors, `filter_by_level` drops it
    only after the bound context is copied and merged with the call's values, by raising
    DropEvent: 2-3 % of a webhook's CPU with the service at WARNING and a few INFO lines per
    request (performance.md, eleventh round). The other methods go through the processors,
    where `filter_by_level` still applies.
    """

    def debug(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        if not self._logger.isEnabledFor(logging.DEBUG):
            return None
        return super().debug(event, *args, **kw)

    def info(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        if not self._logger.isEnabledFor(logging.INFO):
            return None
        return super().info(event, *args, **kw)


def _configure_structlog() -> None:
    """The structlog chain: the same for every configuration, so loggers can be cached.

    Done when this module is imported, before any logger can be used: a logger cached on its
    first use therefore always has this chain (with redaction). What differs between
    configurations (level, renderer, secrets) is looked up when a line is written.
    """
    structlog.configure(
        # filter_by_level first: a debug call on the hot path costs one level check, not the
        # whole chain (context merge, timestamp, redaction) before the handler drops it.
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=LevelCheckedLogger,
        # Without caching every log call builds its logger again (about 5 % of a webhook's
        # CPU, docs/performance.md).
        cache_logger_on_first_use=True,
    )


def configure_logging(
    *,
    level: str = "INFO",
    fmt: str = "console",
    secret_values: Iterable[str] = (),
    logger_levels: Mapping[str, str] | None = None,
) -> None:
    secrets.add(*secret_values)
    shared = _SHARED
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_json_line)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_exception,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # uvicorn and SQLAlchemy keep their own handlers unless told to propagate to ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy", "alembic", "httpx"):
        lib_logger = logging.getLogger(name)
        lib_logger.handlers = []
        lib_logger.propagate = True
    # uvicorn formats every response's access-log arguments (client address, quoted path)
    # whenever this logger has a handler anywhere up its chain, whatever its level: ~1.5 %
    # of a webhook's CPU. The access log is off unless an operator names it in BRIDGE_LOG_LEVELS
    # (whose level is set below). Off: no handler up the chain, and above every level, or the
    # stdlib's last-resort handler would print a warning unformatted.
    access = logging.getLogger("uvicorn.access")
    access.propagate = "uvicorn.access" in (logger_levels or {})
    access.setLevel(logging.CRITICAL + 1)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(tuple(f"{quiet}." for quiet in QUIET_LOGGERS)):
            logging.getLogger(name).setLevel(logging.NOTSET)  # a level asked for earlier
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name, named_level in (logger_levels or {}).items():
        logging.getLogger(name).setLevel(named_level.upper())


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]


_configure_structlog()
