"""No secret reaches the log output: not as a value, not nested, not inside an exception, not
through stdlib loggers (uvicorn, SQLAlchemy), and not under a key that names a secret."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator

import pytest
import structlog

from channel_bridge.ops.logging import configure_logging, get_logger
from channel_bridge.ops.logging import secrets as secret_registry
from channel_bridge.settings import Settings

CONFIGURED = {
    name: f"{name.replace('_', '-')}-{secrets.token_hex(16)}"
    for name in (
        "secret_key",
        "admin_token",
        "axp_callback_token",
        "axp_client_secret",
        "axp_app_key",
        "nexus_api_key",
        "akixi_password",
        "akixi_auth_password1",
        "akixi_auth_password2",
    )
}
# Values never registered anywhere: only the key they are logged under can hide them.
UNREGISTERED = {
    key: f"unregistered-{key}-{secrets.token_hex(8)}"
    for key in (
        "secret",
        "password",
        "token",
        "authorization",
        "client_secret",
        "webhook_secret",
        "api_key",
        "X-Hub-Signature",
        "appkey",
    )
}


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, structlog.get_config())
    try:
        yield
    finally:
        root.handlers, root.level = saved[0], saved[1]
        structlog.configure(**saved[2])


def emit_everything() -> None:
    log = get_logger("channel_bridge.test")
    for name, value in CONFIGURED.items():
        log.info("plain value", detail=value, setting=name)
        log.info("embedded value", url=f"https://bridge.test/axp/callbacks/{value}/notifications")
        log.info("nested value", body={"outer": {"inner": [value, {"deep": value}]}}, ids=(value,))
        log.warning(f"in the event text {value}")
        try:
            raise RuntimeError(f"upstream rejected credentials {value}")
        except RuntimeError:
            log.exception("call failed")
        # Libraries log through the standard library, as uvicorn and SQLAlchemy do.
        logging.getLogger("uvicorn.error").error("bad request from %s", value)
        logging.getLogger("sqlalchemy.engine").warning("connect failed: %r", {"password": value})
        logging.getLogger("httpx").warning("HTTP Request: POST https://x.test/?k=%s", value)
        try:
            raise ValueError(value)
        except ValueError:
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    for key, value in UNREGISTERED.items():
        log.info("sensitive key", **{key: value})
        log.info("sensitive nested key", headers={key: value}, payload={"data": {key: value}})
        logging.getLogger("channel_bridge.stdlib").info("extra field", extra={key: value})
    log.info("redaction done", marker="end-of-test-output")


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_no_configured_or_keyed_secret_appears_in_log_output(
    fmt: str, capfd, restore_logging
) -> None:
    settings = Settings(_env_file=None, _secrets_dir=None, env="dev", **CONFIGURED)
    assert set(settings.secret_values()) >= set(CONFIGURED.values())
    configure_logging(level="DEBUG", fmt=fmt, secret_values=settings.secret_values())

    emit_everything()

    out, err = capfd.readouterr()
    output = out + err
    # The lines were written (so the check below is not vacuous) ...
    assert "end-of-test-output" in output
    # (the traceback shows the raising line and the message: two hits per exception)
    assert output.count("upstream rejected credentials") >= len(CONFIGURED)
    assert "Exception in ASGI application" in output and "bad request from" in output
    assert "***" in output
    # ... and no secret is in them.
    for name, value in CONFIGURED.items():
        assert value not in output, f"{name} leaked into the {fmt} log"
    for key, value in UNREGISTERED.items():
        assert value not in output, f"a value under {key!r} leaked into the {fmt} log"


def test_a_secret_registered_at_run_time_is_masked(capfd, restore_logging) -> None:
    configure_logging(level="INFO", fmt="json")
    decrypted_channel_secret = f"channel-webhook-{secrets.token_hex(12)}"
    secret_registry.add(decrypted_channel_secret)
    get_logger("channel_bridge.test").info("verifying", note=f"key {decrypted_channel_secret}")
    err = capfd.readouterr().err
    assert "verifying" in err and "key ***" in err
    assert decrypted_channel_secret not in err


def test_uvicorn_access_log_is_off_unless_named(capfd, restore_logging) -> None:
    # uvicorn formats each response's access-log line whenever this logger has a handler up
    # its chain (HttpToolsProtocol: `access_logger.hasHandlers()`), whatever its level.
    access = logging.getLogger("uvicorn.access")
    saved = (access.level, access.propagate)
    try:
        configure_logging(level="INFO", fmt="json")
        assert not access.hasHandlers()
        access.warning('127.0.0.1:1 - "POST /x HTTP/1.1" 500')
        assert "POST /x" not in capfd.readouterr().err

        configure_logging(level="INFO", fmt="json", logger_levels={"uvicorn.access": "INFO"})
        assert access.hasHandlers()
        access.info('127.0.0.1:1 - "POST /y HTTP/1.1" 200')
        assert "POST /y" in capfd.readouterr().err
    finally:
        access.setLevel(saved[0])
        access.propagate = saved[1]
