"""Structured logs: JSON lines by default, binding context from contextvars, redaction.

:func:`configure_logging` installs one handler on the root logger. Each record it
writes carries ``ts``, ``level``, ``logger`` and ``message``, then the binding context
(``namespace``, ``certificatebinding``, ``destination``) that the reconciler sets with
:func:`log_context`, then any ``extra=`` fields, then ``exc_info`` as a string.

The context lives in a :class:`contextvars.ContextVar`, so it follows a reconcile
across its awaits and each asyncio task sees only its own (a task copies the context
it was created in; what it sets later stays its own).

:class:`RedactingFilter` is the last line of defence against key material in logs:
code must never log a key, but if a PEM block or anything mentioning ``PRIVATE KEY``
reaches a record's message, arguments, ``extra=`` fields or traceback, it is replaced
with ``[redacted]`` before any handler writes it. Base64 or DER without PEM armour
cannot be recognised; not logging secrets in the first place remains the rule.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any, Final, Literal

import orjson

__all__ = [
    "CONTEXT_FIELDS",
    "JsonFormatter",
    "RedactingFilter",
    "TextFormatter",
    "configure_logging",
    "current_context",
    "log_context",
    "redact",
]

REDACTED: Final = "[redacted]"
CONTEXT_FIELDS: Final = ("namespace", "certificatebinding", "destination")
"""The binding context fields, in the order they appear in a JSON line."""

_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# A PEM block, or its beginning when the end was cut off (a truncated message).
_PEM: Final = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|\Z)", re.DOTALL)
_PRIVATE_KEY: Final = "PRIVATE KEY"

# Every attribute a plain LogRecord has: anything else on a record came from extra=.
_RECORD_ATTRIBUTES: Final = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    *CONTEXT_FIELDS,
}

_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "certauto_log_context", default=_EMPTY
)

_HANDLER_MARK: Final = "_certauto_handler"


# ---------------------------------------------------------------------- context
@contextmanager
def log_context(
    *,
    namespace: str | None = None,
    certificatebinding: str | None = None,
    destination: str | None = None,
) -> Iterator[None]:
    """Add binding context to every record logged inside the ``with`` block.

    Nests: an inner block adds to (or overrides) the outer fields, and the outer
    ones are back on exit, even when the block raises. Arguments left as ``None``
    keep the outer value. Use it within one task; a task started inside the block
    inherits the fields as they were when it was created.
    """
    added = {
        key: value
        for key, value in (
            ("namespace", namespace),
            ("certificatebinding", certificatebinding),
            ("destination", destination),
        )
        if value is not None
    }
    token = _context.set(MappingProxyType({**_context.get(), **added}))
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> Mapping[str, str]:
    """The binding context fields in effect here (read-only)."""
    return _context.get()


class ContextFilter(logging.Filter):
    """Copy the binding context onto each record when it is made.

    Capturing it on the record (not at formatting time) keeps it right even if a
    handler formats later or on another thread. A field passed in ``extra=`` wins.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


# ---------------------------------------------------------------------- redaction
def redact(text: str) -> str:
    """``text`` with each PEM block replaced, or ``[redacted]`` if it names a private key."""
    text = _PEM.sub(REDACTED, text)
    return REDACTED if _PRIVATE_KEY in text else text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes | bytearray):
        decoded = bytes(value).decode("utf-8", "replace")
        return REDACTED if redact(decoded) != decoded else value
    if isinstance(value, Mapping):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(item) for item in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    # Any other object is logged through str(): redact what it would show.
    shown = str(value)
    return REDACTED if redact(shown) != shown else value


class RedactingFilter(logging.Filter):
    """Replace key material in the message, its arguments, extras and traceback.

    The message is merged with its arguments first (``record.getMessage()``), so a
    PEM passed as an argument or hidden in an object's ``str()`` is caught as well;
    the record then carries the redacted text and no arguments.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what can be shown, safely
            message = f"{record.msg!s} (unformattable arguments dropped)"
        record.msg = redact(message)
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key not in _RECORD_ATTRIBUTES or key in CONTEXT_FIELDS:
                setattr(record, key, _redact_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FORMATTER: Final = logging.Formatter()


# ---------------------------------------------------------------------- formats
def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in record.__dict__.items() if key not in _RECORD_ATTRIBUTES}


def _traceback(record: logging.LogRecord) -> str | None:
    if record.exc_info and not record.exc_text:
        record.exc_text = _FORMATTER.formatException(record.exc_info)
    parts = [part for part in (record.exc_text, record.stack_info) if part]
    return "\n".join(parts) if parts else None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, context,
    extras, ``exc_info``. Extras never overwrite the fixed fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value
        for key, value in _extras(record).items():
            line.setdefault(key, value)
        traceback = _traceback(record)
        if traceback:
            line["exc_info"] = traceback
        return orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


class TextFormatter(logging.Formatter):
    """For humans: ``ts LEVEL logger: message  key=value ...`` and the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {key: getattr(record, key, None) for key in CONTEXT_FIELDS}
        fields.update(_extras(record))
        shown = " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)
        text = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if shown:
            text += f"  {shown}"
        traceback = _traceback(record)
        if traceback:
            text += "\n" + traceback
        return text


# ---------------------------------------------------------------------- setup
def configure_logging(
    level: str = "info",
    fmt: Literal["json", "text"] = "json",
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send every log record to ``stream`` (``sys.stderr`` when None) as JSON or text.

    Installs one handler on the root logger, with the context and redaction
    filters, and sets the root level. Calling it again replaces the handler it
    installed before (other handlers are left alone). Returns the handler, so a
    caller (or a test) can remove it again.
    """
    try:
        numeric_level = _LEVELS[level.lower()]
    except KeyError:
        choices = ", ".join(sorted(_LEVELS))
        raise ValueError(f"unknown log level {level!r} (use one of {choices})") from None
    if fmt not in ("json", "text"):
        raise ValueError(f"unknown log format {fmt!r} (use json or text)")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(numeric_level)
    return handler
