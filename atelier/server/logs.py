"""Structured logs: one JSON object per line. Request lines carry the request id, method, route,
status and duration, never headers or query strings (keys and link signatures live there).
Python warnings (the pipeline's "the prompt is empty", ...) are log lines too, with the request
id of the request that raised them: the model worker records them around each job
(atelier.server.model_thread), and `configure` routes any other warning of the process here."""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from contextvars import ContextVar
from pathlib import Path

ACCESS = "atelier.server.access"
LOGGER = "atelier.server"
WARNINGS = "atelier.server.warnings"
REQUEST_ID: ContextVar[str | None] = ContextVar("atelier_request_id", default=None)   # set by middleware.Observe
JOB_ID: ContextVar[str | None] = ContextVar("atelier_job_id", default=None)   # set by the job runner


def log_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one log line (warnings.showwarning's signature), tagged with the ids of the
    current request and job (a job's warnings carry the id of the request that made it)."""
    extra = {"category": category.__name__, "source": f"{Path(str(filename)).name}:{lineno}"}
    for name, variable in (("request_id", REQUEST_ID), ("job_id", JOB_ID)):
        if (value := variable.get()) is not None:
            extra[name] = value
    logging.getLogger(WARNINGS).warning("%s", message, extra=extra)


class JsonFormatter(logging.Formatter):
    FIELDS = ("request_id", "method", "route", "path", "status", "duration_ms", "user_id", "key_prefix",
              "category", "source", "asset_id", "job_id")

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                 + f".{int(record.msecs):03d}Z", "level": record.levelname.lower(), "logger": record.name,
                 "message": record.getMessage()}
        entry.update({name: getattr(record, name) for name in self.FIELDS if hasattr(record, name)})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str = "info", stream=None) -> None:
    """JSON lines on stderr for the server's loggers and uvicorn's (whose access log is off: ours
    replaces it), and for every Python warning of the process (`atelier serve`)."""
    warnings.showwarning = log_warning
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in (LOGGER, "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
