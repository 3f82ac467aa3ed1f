"""Logging for every paygate server process: one formatter, text or JSON, one line a record.

``PAYGATE_LOG_FORMAT``: ``text`` (default: ``time level logger message key=value …``) or
``json`` (one object a line: ``time``, ``level``, ``logger``, ``message`` and the fields).
Structured fields travel in ``extra={"fields": {...}}`` so both formats render them.

Three loggers are on at ``info`` whatever ``--log-level`` says (it governs diagnostics:
uvicorn's and the gateway's warnings and errors):

* ``paygate.startup`` — one line when a server starts (version, database kind, processor,
  listen address, workers; never a credential: see :func:`redact_url`);
* ``paygate.request`` — one line a request (:mod:`paygate_server.observability.middleware`);
  ``PAYGATE_ACCESS_LOG=0`` turns it off (then a request pays one ``isEnabledFor`` check);
* ``paygate.reconciler`` — one line a check of an operation whose outcome its request did
  not learn (which processor was asked, what it said), and one a hold it begins to void: what the gateway did about money on its
  own (rare: an operation settled by its request has no check).

uvicorn applies :func:`logging_config` in every process it starts (``log_config=``), so a
multi-worker gateway logs the same way from every worker. What may appear in a line is
decided where the line is made: route templates (never raw paths or query strings), ids,
codes — never a card number, CVC, secret, signature or client secret.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any
from urllib.parse import urlsplit

__all__ = ["LogFormatter", "logging_config", "redact_url", "RECONCILER_LOGGER", "REQUEST_LOGGER",
           "STARTUP_LOGGER"]

RECONCILER_LOGGER = "paygate.reconciler"
REQUEST_LOGGER = "paygate.request"
STARTUP_LOGGER = "paygate.startup"
_FORMATS = ("text", "json")


class LogFormatter(logging.Formatter):
    def __init__(self, fmt: str = "text") -> None:
        super().__init__()
        if fmt not in _FORMATS:
            raise ValueError(f"PAYGATE_LOG_FORMAT must be one of {', '.join(_FORMATS)}, not {fmt!r}")
        self.json = fmt == "json"
        # No field of ours needs the caller's frame, thread or process: skipping them is a
        # third of a record's cost (the logging cookbook's "optimization" settings), and
        # the request log runs once per request.
        logging._srcfile = None  # type: ignore[attr-defined]  # noqa: SLF001
        logging.logThreads = False
        logging.logProcesses = False
        logging.logMultiprocessing = False

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{seconds}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", None) or {}
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if self.json:
            line: dict[str, Any] = {"time": self.formatTime(record), "level": record.levelname,
                                    "logger": record.name, "message": message, **fields}
            if record.exc_text:
                line["exception"] = record.exc_text
            return json.dumps(line, separators=(",", ":"), default=str)
        text = f"{self.formatTime(record)} {record.levelname} {record.name} {message}"
        if fields:
            text += " " + " ".join(f"{k}={'-' if v is None else v}" for k, v in fields.items())
        if record.exc_text:
            text += "\n" + record.exc_text
        return text


def logging_config(level: str = "warning", env: dict[str, str] | None = None) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document (uvicorn's ``log_config``)."""
    env = dict(os.environ) if env is None else env
    fmt = env.get("PAYGATE_LOG_FORMAT", "text").strip().lower() or "text"
    LogFormatter(fmt)  # refuse a wrong format now, as a one-line error
    access = env.get("PAYGATE_ACCESS_LOG", "1").strip().lower() not in ("0", "false", "no", "off")
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"paygate": {"()": LogFormatter, "fmt": fmt}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "paygate",
                                "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            # uvicorn's own loggers carry handlers in its default config: here they only
            # propagate to the one handler above.
            **{name: {"handlers": [], "level": level, "propagate": True}
               for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
            STARTUP_LOGGER: {"level": "INFO"},
            RECONCILER_LOGGER: {"level": "INFO"},
            REQUEST_LOGGER: {"level": "INFO" if access else "CRITICAL"},
        },
    }


def redact_url(url: str) -> str:
    """``scheme://host[:port]/path`` of a database or processor URL: no user name, password
    or query string (which may carry ``password=`` or ``sslkey=``)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparseable URL)"
    if not parts.scheme:
        return "(no URL)"
    return f"{parts.scheme}://{host}{port}{parts.path}"
