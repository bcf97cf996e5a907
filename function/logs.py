"""Structured logs for Cloud Logging: one JSON object per line, with the request's id and trace.

Cloud Run sends stdout/stderr to Cloud Logging, which reads ``severity``, ``message`` and
``logging.googleapis.com/trace`` from JSON lines, so a request's lines are grouped with its trace.
Nothing logged here carries request bodies or headers: no API key, no uploaded content.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Literal

_request: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("scope_request", default={})


def bind_request(request_id: str, trace_header: str | None, project: str | None) -> contextvars.Token:
    """Tie the following log lines (this thread's) to a request, and to its Cloud Trace."""
    fields = {"requestId": request_id}
    trace_id = (trace_header or "").split("/", 1)[0].strip()
    if trace_id and trace_id.isalnum() and len(trace_id) <= 64:
        fields["logging.googleapis.com/trace"] = f"projects/{project}/traces/{trace_id}" if project else trace_id
    return _request.set(fields)


def unbind_request(token: contextvars.Token) -> None:
    _request.reset(token)


class CloudLoggingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "logger": record.name,
        }
        entry.update(_request.get())
        entry.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)  # read by Error Reporting
        return json.dumps(entry, ensure_ascii=False, default=str)


def phase(logger: logging.Logger, name: str, event: Literal["start", "end"], ms: int | None = None,
          failed: bool = False) -> None:
    """A phase of a request's work starting or ending (``failed``: ending by an error), as a line with
    fields (the CLI draws from these). Every start has its end, so a failure shows where it struck."""
    fields: dict[str, object] = {"phase": name, "event": event}
    if ms is not None:
        fields["ms"] = ms
    if failed:
        fields["failed"] = True
    said = "started" if event == "start" else "failed" if failed else "ended"
    logger.info("%s %s", name, said, extra={"fields": fields})


@dataclass
class Span:
    """A phase under way: its start is logged when it begins (``start``), its end once, by whichever
    thread ends it (``end``), so a phase that begins and ends in callbacks on different threads logs
    as one that wraps a block does (``phase_span``)."""

    logger: logging.Logger
    name: str
    began: float = field(default_factory=time.monotonic)  # monotonic clock
    ended: float = 0.0  # 0 while it runs
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def start(cls, logger: logging.Logger, name: str) -> "Span":
        span = cls(logger, name)
        phase(logger, name, "start")
        return span

    @property
    def ms(self) -> int:
        return int((self.ended - self.began) * 1000)

    def end(self, failed: bool = False) -> None:
        """Log the end with the phase's length (``failed``: ended by an error); a second call does nothing."""
        with self._lock:
            if self.ended:
                return
            self.ended = time.monotonic()
        phase(self.logger, self.name, "end", self.ms, failed=failed)


@contextmanager
def phase_span(logger: logging.Logger, name: str) -> Iterator[Span]:
    """Log a phase's start, then its end with its length, marked failed if the block raised."""
    span = Span.start(logger, name)
    try:
        yield span
    except BaseException:
        span.end(failed=True)
        raise
    span.end()


def progress(logger: logging.Logger, name: str, done: int, of: int, unit: str) -> None:
    """How far a phase is (``done`` of ``of`` ``unit``), at debug level: the CLI's bars, not the service's logs."""
    logger.debug("%s at %d of %d %s", name, done, of, unit,
                 extra={"fields": {"phase": name, "event": "progress", "done": done, "of": of, "unit": unit}})


def setup() -> None:
    """JSON lines on stderr for the service's own loggers."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(CloudLoggingFormatter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)
