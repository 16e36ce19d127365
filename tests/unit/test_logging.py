"""JSON logs: fixed fields, binding context from contextvars, extras, redaction."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from certauto_core.observability.logging import configure_logging, log_context, redact

CERT_BODY = "MIIBszCCAVmgAwIBAgIUQ2VydEF1dG8gdGVzdA=="
KEY_BODY = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg"
PEM_CERT = f"-----BEGIN CERTIFICATE-----\n{CERT_BODY}\n-----END CERTIFICATE-----"
PEM_KEY = f"-----BEGIN PRIVATE KEY-----\n{KEY_BODY}\n-----END PRIVATE KEY-----"

Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Logging configured into a buffer; the root logger is restored afterwards."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    buffer = io.StringIO()
    handler = configure_logging("debug", "json", stream=buffer)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(level)
        assert root.handlers == handlers


@pytest.fixture
def lines(stream: io.StringIO) -> Lines:
    def read() -> list[dict[str, Any]]:
        parsed = [json.loads(line) for line in stream.getvalue().splitlines()]
        return [line for line in parsed if line["logger"] == "certauto.test"]

    return read


log = logging.getLogger("certauto.test")


def test_a_line_has_the_fixed_fields(lines: Lines) -> None:
    log.info("hello %s", "world")

    [line] = lines()
    assert line["message"] == "hello world"
    assert line["level"] == "info"
    assert line["logger"] == "certauto.test"
    assert line["ts"].endswith("Z")
    assert "T" in line["ts"]
    assert "namespace" not in line


def test_context_fields_and_extras(lines: Lines) -> None:
    with log_context(namespace="apps", certificatebinding="web"):
        log.warning("sync failed", extra={"attempt": 3, "type": "aws-acm"})

    [line] = lines()
    assert line["namespace"] == "apps"
    assert line["certificatebinding"] == "web"
    assert line["attempt"] == 3
    assert line["type"] == "aws-acm"
    assert line["level"] == "warning"


def test_context_nests_and_restores(lines: Lines) -> None:
    with log_context(namespace="apps", certificatebinding="web"):
        with log_context(destination="kv-prod"):
            log.info("inner")
        log.info("outer")
    log.info("none")

    inner, outer, none = lines()
    assert (inner["namespace"], inner["certificatebinding"], inner["destination"]) == (
        "apps",
        "web",
        "kv-prod",
    )
    assert "destination" not in outer
    assert outer["certificatebinding"] == "web"
    assert not {"namespace", "certificatebinding", "destination"} & none.keys()


def test_context_is_restored_when_the_block_raises(lines: Lines) -> None:
    with pytest.raises(RuntimeError), log_context(namespace="apps"):
        raise RuntimeError("boom")
    log.info("after")

    assert "namespace" not in lines()[0]


def test_extras_cannot_overwrite_the_fixed_fields(lines: Lines) -> None:
    log.info("real", extra={"level": "fake", "ts": "fake", "logger": "fake"})

    [line] = lines()
    assert (line["level"], line["logger"]) == ("info", "certauto.test")
    assert line["ts"] != "fake"


async def test_concurrent_tasks_keep_their_own_context(lines: Lines) -> None:
    both_inside = asyncio.Barrier(2)

    async def reconcile(binding: str) -> None:
        with log_context(namespace="apps", certificatebinding=binding):
            await both_inside.wait()  # each task is inside its block when the other logs
            log.info("before await")
            await asyncio.sleep(0)
            with log_context(destination=f"{binding}-dest"):
                await asyncio.sleep(0)
                log.info("after await")

    await asyncio.gather(reconcile("web"), reconcile("api"))

    seen = {(line["certificatebinding"], line.get("destination")) for line in lines()}
    assert seen == {("web", None), ("api", None), ("web", "web-dest"), ("api", "api-dest")}


def test_exception_is_formatted_as_a_string(lines: Lines) -> None:
    try:
        raise ValueError("bad chain order")
    except ValueError:
        log.exception("validation crashed")

    [line] = lines()
    assert line["level"] == "error"
    assert isinstance(line["exc_info"], str)
    assert "Traceback" in line["exc_info"]
    assert "ValueError: bad chain order" in line["exc_info"]


def test_pem_in_message_args_and_extras_is_redacted(stream: io.StringIO, lines: Lines) -> None:
    log.info("publishing %s now", PEM_CERT, extra={"material": PEM_KEY, "nested": [PEM_CERT]})
    log.info("key: " + KEY_BODY + " PRIVATE KEY")

    output = stream.getvalue()
    assert "BEGIN" not in output
    assert KEY_BODY not in output
    first, second = lines()
    assert first["message"] == "publishing [redacted] now"
    assert first["material"] == "[redacted]"
    assert first["nested"] == ["[redacted]"]
    assert second["message"] == "[redacted]"


def test_pem_in_an_exception_is_redacted(stream: io.StringIO) -> None:
    try:
        raise ValueError(f"could not parse {PEM_KEY}")
    except ValueError:
        log.exception("parse failed")

    output = stream.getvalue()
    assert "ValueError" in output
    assert KEY_BODY not in output
    assert "PRIVATE KEY" not in output


def test_an_object_showing_a_key_is_redacted(stream: io.StringIO) -> None:
    class Leaky:
        def __str__(self) -> str:
            return PEM_KEY

    log.info("value: %s", Leaky(), extra={"obj": Leaky()})

    assert KEY_BODY not in stream.getvalue()


def test_a_truncated_pem_block_is_redacted() -> None:
    assert redact("got -----BEGIN CERTIFICATE-----\nMIIBszCC") == "got [redacted]"
    assert redact("harmless message") == "harmless message"


def test_text_format_for_humans() -> None:
    root = logging.getLogger()
    level = root.level
    buffer = io.StringIO()
    handler = configure_logging("info", "text", stream=buffer)
    try:
        with log_context(namespace="apps", certificatebinding="web"):
            log.info("synced %s", PEM_CERT, extra={"destination": "kv"})
        log.debug("not shown at info")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)

    text = buffer.getvalue()
    assert "INFO" in text
    assert "certauto.test: synced [redacted]" in text
    assert "namespace=apps certificatebinding=web destination=kv" in text
    assert "not shown" not in text
    assert not text.lstrip().startswith("{")


def test_configuring_again_replaces_the_handler() -> None:
    root = logging.getLogger()
    level, before = root.level, list(root.handlers)
    first = configure_logging(stream=io.StringIO())
    second = configure_logging(stream=io.StringIO())
    try:
        assert first not in root.handlers
        assert second in root.handlers
    finally:
        root.removeHandler(second)
        root.setLevel(level)
    assert root.handlers == before


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("verbose", stream=io.StringIO())
