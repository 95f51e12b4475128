"""Structured logs: one JSON object a line, carrying the request id; never a code or a key.

No terminal colours: uvicorn's `color_message` extra is dropped, and ANSI escape sequences are
removed from every text logged, so a log line is plain JSON whatever a library passed.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import sys
import time
from contextvars import ContextVar
from typing import Any

import orjson

from oneclickdz.server.formats import iso

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

_REQUEST_PREFIX = secrets.token_hex(3)
_request_numbers = itertools.count(1)


def _new_process() -> None:
    """In a forked worker: a request-id prefix of its own, so ids stay unique across workers."""
    global _REQUEST_PREFIX, _request_numbers  # noqa: PLW0603
    _REQUEST_PREFIX = secrets.token_hex(3)
    _request_numbers = itertools.count(1)


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_new_process)


def new_request_id() -> str:
    """`req_<unix seconds>_<process tag><sequence>`: unique, and cheap (no system call)."""
    return f"req_{int(time.time())}_{_REQUEST_PREFIX}{next(_request_numbers):x}"


# Attributes every LogRecord has; anything else was passed by `extra=` and is logged as a field.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_DROPPED = _STANDARD | {"color_message"}  # uvicorn's copy of the message, with ANSI colours
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")


def _plain(value: Any) -> Any:
    """`value` without ANSI escape sequences, when it is text."""
    return _ANSI.sub("", value) if isinstance(value, str) and "\x1b" in value else value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,  # which worker, with `serve --workers N`
            "event": _plain(record.getMessage()),
        }
        if (rid := request_id.get()) is not None:
            event["requestId"] = rid
        for name, value in record.__dict__.items():
            if name not in _DROPPED and not name.startswith("_"):
                event[name] = _plain(value)
        if record.exc_info:
            event["exception"] = _plain(self.formatException(record.exc_info))
        return orjson.dumps(event, default=str).decode()


def configure(level: str = "info") -> None:
    """Send the service's and uvicorn's logs to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
