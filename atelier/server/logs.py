"""Structured logs: one JSON object per line. Request lines carry the request id, method, route,
status and duration, never headers or query strings (keys and link signatures live there)."""

from __future__ import annotations

import json
import logging
import sys
import time

ACCESS = "atelier.server.access"
LOGGER = "atelier.server"


class JsonFormatter(logging.Formatter):
    FIELDS = ("request_id", "method", "route", "path", "status", "duration_ms", "user_id", "key_prefix")

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                 + f".{int(record.msecs):03d}Z", "level": record.levelname.lower(), "logger": record.name,
                 "message": record.getMessage()}
        entry.update({name: getattr(record, name) for name in self.FIELDS if hasattr(record, name)})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str = "info", stream=None) -> None:
    """JSON lines on stderr for the server's loggers and uvicorn's (whose access log is off: ours replaces it)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in (LOGGER, "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
