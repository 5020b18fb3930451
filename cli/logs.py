"""Logging for the ``voxgate`` command: text for people, or JSON lines for a log store.

Each line says which call and agent it is about (from ``calls.logcontext``) and, in JSON, which stage of VoxGate
logged it, so one call can be followed through signaling, media and models by filtering on one key.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import IO

from calls.logcontext import AGENT, CALL_ID

# Loggers that are not VoxGate's own packages, by the stage they belong to (others: their first component).
_STAGES = {"aiohttp.access": "access", "aiortc": "webrtc", "aioice": "webrtc"}


def stage(logger: str) -> str:
    """The part of VoxGate a logger belongs to: ``calls.subtitles`` -> ``calls``, ``aioice.ice`` -> ``webrtc``."""
    if logger in _STAGES:
        return _STAGES[logger]
    first = logger.split(".", 1)[0]
    return _STAGES.get(first, first)


class CallContext(logging.Filter):
    """Puts the call and agent of the current context on each record (an explicit ``extra`` wins: threads)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.call = _text(getattr(record, "call", None)) or CALL_ID.get()
        record.agent = _text(getattr(record, "agent", None)) or AGENT.get()
        return True


class TextFormatter(logging.Formatter):
    """``LEVEL message call=ID agent=NAME``, the ids only when known; a bad format string never loses the line."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        about = "".join(
            f" {key}={value}" for key in ("call", "agent") if (value := _text(getattr(record, key, None))) is not None
        )
        return f"{record.levelname} {record.message}{about}"

    def format(self, record: logging.LogRecord) -> str:
        record.message = _message(record)  # logging.Formatter.format would raise on a bad format string
        text = self.formatMessage(record)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with the same keys on every line (null when none), for a log store to index."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "stage": stage(record.name),
            "call": _text(getattr(record, "call", None)),
            "agent": _text(getattr(record, "agent", None)),
            "message": _message(record),
        }
        if record.exc_info or record.stack_info:
            error = self.formatException(record.exc_info) if record.exc_info else ""
            entry["error"] = "\n".join(e for e in (error, record.stack_info) if e)
        line = json.dumps(entry, ensure_ascii=False)
        # A lone surrogate (undecodable bytes read as text) cannot be written as UTF-8: keep it as a JSON escape.
        return line.encode("utf-8", "backslashreplace").decode("utf-8")


def handler(fmt: str = "text", stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing ``fmt`` (text or json) lines to ``stream`` (stderr), with the call context on each."""
    h = logging.StreamHandler(stream)
    h.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    h.addFilter(CallContext())
    return h


def setup(level: int, fmt: str = "text") -> None:
    """Like ``basicConfig``: does nothing where the root logger already has handlers (a test's capture)."""
    logging.basicConfig(level=level, handlers=[handler(fmt)])


def _utc(created: float) -> str:
    """ISO 8601 in UTC to the millisecond (``2025-01-31T09:30:00.123Z``): sortable, and the same on every node."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _message(record: logging.LogRecord) -> str:
    """The formatted message, or the raw one with its arguments when they do not fit it: a log line is never lost."""
    try:
        return record.getMessage()
    except Exception:
        return f"{_text(record.msg)} {_text(record.args)}"


def _text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"
