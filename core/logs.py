"""Logging for every process: one setup function, JSON lines off a terminal, correlation ids,
and secrets scrubbed from whatever is written.

A correlation id follows an ingest: the HTTP middleware binds the request's id
(``bind_correlation_id``), the ingest stores it in the event's metadata (``correlationId``),
the relay sends it as a NATS header, and the projection worker logs it when it applies the
event. Log calls outside a request may pass ``extra={"correlation_id": ...}`` themselves.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import uuid
from datetime import UTC, datetime
from typing import Any, TextIO

_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "artifactlog_correlation_id", default=None)

# Accepted from clients as is; anything else gets a fresh id (it lands in logs and events).
_VALID_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

# What must never reach a log: bearer tokens, API tokens (al_...), passwords in DSNs and
# password=... key-value pairs (libpq connection strings, error messages quoting them).
_SECRETS = (
    (re.compile(r"(?i)(bearer\s+)[^\s\"',;]+"), r"\1***"),
    (re.compile(r"\bal_[A-Za-z0-9_\-]{8,}"), "al_***"),
    (re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^/\s:@\"']*:)[^@\s\"']+@"), r"\1***@"),
    (re.compile(r"(?i)(password\s*[=:]\s*)[^\s\"',;&]+"), r"\1***"),
)

# Libraries that are chatty at INFO and DEBUG; our own loggers follow the chosen level.
_QUIET = ("httpx", "httpcore", "nats", "asyncio", "psycopg", "uvicorn", "uvicorn.access",
          "alembic", "strawberry", "urllib3", "clickhouse_connect", "chdb")

_HANDLER_NAME = "artifactlog"

# LogRecord attributes that are not "extra" fields.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def redact(text: str) -> str:
    """``text`` with tokens and passwords replaced by ***."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def accepted_correlation_id(incoming: str | None) -> str:
    """The client's id when it is a sane token, else a new one."""
    if incoming and _VALID_ID.fullmatch(incoming):
        return incoming
    return new_correlation_id()


def current_correlation_id() -> str | None:
    """The id bound to the running request or task, if any."""
    return _correlation_id.get()


def bind_correlation_id(value: str | None) -> contextvars.Token[str | None]:
    return _correlation_id.set(value)


def reset_correlation_id(token: contextvars.Token[str | None]) -> None:
    _correlation_id.reset(token)


class _CorrelationFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "correlation_id", None) is None:
            record.correlation_id = _correlation_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, correlation_id and any
    ``extra`` fields; the whole line is scrubbed of secrets."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        entry.update({k: v for k, v in vars(record).items()
                      if k not in _STANDARD and not k.startswith("_") and v is not None})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """For people at a terminal: the usual line, the correlation id when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        cid = getattr(record, "correlation_id", None)
        return redact(f"{line} [cid={cid}]" if cid else line)


def setup_logging(level: str | int = "INFO", *, stream: TextIO | None = None,
                  json_lines: bool | None = None) -> logging.Handler:
    """Route every log record to ``stream`` (stderr): JSON lines unless it is a terminal.
    Replaces the handler an earlier call installed, so calling it again reconfigures."""
    target = sys.stderr if stream is None else stream
    if json_lines is None:
        json_lines = not (hasattr(target, "isatty") and target.isatty())
    handler = logging.StreamHandler(target)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    handler.addFilter(_CorrelationFilter())
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    return handler
