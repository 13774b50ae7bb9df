"""Log lines: one JSON object per line (the default) or plain text, with request and job ids.

``configure_logging`` is called once by ``backserv serve`` (never at import): it puts one
handler on the root logger, and uvicorn's own loggers propagate to it (``serve`` starts
uvicorn with ``log_config=None``). Each JSON line holds ``ts`` (UTC, ISO 8601), ``level``,
``logger``, ``message``, ``request_id``, ``job_id`` (null when there is none), any other
``extra={...}`` fields, and ``exception`` when a traceback was logged.

URLs lose their user info, query string and fragment in every line (``redact``):
httpx's "HTTP Request: POST <url> ..." line and uvicorn's access line get a filter that
rewrites them, rather than being silenced (httpx raised to WARNING): the line, with its
method, host, path and status, is how an operator sees what the gateway's calls to
providers and webhook receivers answered, and a filter keeps holding at any log level.

The request id comes from the context variable the request-id middleware sets; the job id
from ``extra={"job_id": ...}`` or else from ``current_job_id``, which the scheduler sets in
each job's task: every line logged while a job runs (runner, providers, storage) carries it.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

import orjson

from gateway.api.request_id import current_request_id
from gateway.observability.redact import LOGGERS as URL_LOGGERS
from gateway.observability.redact import RedactUrlArgs

current_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)

LogFormat = Literal["json", "text"]
LEVELS = ("critical", "error", "warning", "info", "debug")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: the attributes every LogRecord has; anything else on a record came from ``extra``
#: (``color_message`` is uvicorn's copy of the message with terminal colour codes)
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "job_id",
    "color_message",
}
_MARK = "_backserv_handler"
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


class ContextFilter(logging.Filter):
    """Stamps ``request_id`` and ``job_id`` on each record, from ``extra`` or the context."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id.get()
        if getattr(record, "job_id", None) is None:
            record.job_id = current_job_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC)
        payload: dict[str, Any] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "job_id": getattr(record, "job_id", None),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in payload and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            payload["exception"] = record.exc_text
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(payload, default=str).decode()


class TextFormatter(logging.Formatter):
    """The classic line, with the request and job ids appended when there are any."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = [
            f"{name}={value}"
            for name in ("request_id", "job_id")
            if (value := getattr(record, name, None)) is not None
        ]
        if not ids:
            return line
        head, sep, tail = line.partition("\n")  # keep a traceback below the ids
        return f"{head} [{' '.join(ids)}]{sep}{tail}"


def check_level(level: str) -> str:
    value = level.strip().lower()
    if value not in LEVELS:
        raise ValueError(f"must be one of {', '.join(LEVELS)}")
    return value


def configure_logging(
    level: str = "info", fmt: LogFormat = "json", stream: TextIO | None = None
) -> Callable[[], None]:
    """Send every log line (uvicorn's too) to ``stream`` (stderr) in ``fmt``, at ``level``.

    Replaces the handler of an earlier call. Returns a function that puts the logging setup
    back as it was (for a ``serve`` that stops, or never started, inside a longer process).
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    setattr(handler, _MARK, True)
    root = logging.getLogger()
    uvicorn_loggers = [logging.getLogger(name) for name in UVICORN_LOGGERS]
    saved = (
        root.handlers[:],
        root.level,
        [(lg.handlers[:], lg.propagate, lg.level) for lg in uvicorn_loggers],
    )
    root.setLevel(check_level(level).upper())
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    for uvicorn_logger in uvicorn_loggers:  # through our handler, at our level
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
        uvicorn_logger.setLevel(logging.NOTSET)
    redacting = [lg for lg in map(logging.getLogger, URL_LOGGERS) if not _has_redaction(lg)]
    redaction = RedactUrlArgs()
    for url_logger in redacting:  # on the logger: every handler sees the redacted record
        url_logger.addFilter(redaction)

    def undo() -> None:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])  # setLevel, not assignment: it clears the loggers' caches
        for lg, (handlers, propagate, lg_level) in zip(uvicorn_loggers, saved[2], strict=True):
            lg.handlers[:], lg.propagate = handlers, propagate
            lg.setLevel(lg_level)  # uvicorn sets its loggers' levels from ours
        for url_logger in redacting:
            url_logger.removeFilter(redaction)

    return undo


def _has_redaction(logger: logging.Logger) -> bool:
    return any(isinstance(f, RedactUrlArgs) for f in logger.filters)
