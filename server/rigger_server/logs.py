"""How the server logs: `--log-format text` (the default) or `json`, one object per line.

JSON records are python-json-logger's: every record's timestamp, level,
logger and message, plus its `extra` fields (a call's method, code,
duration_ms, peer and committed sequences: calls.py), and a worker's index
under `--workers`. Warnings (`warnings.warn`) become records too.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

FORMATS = ("text", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(log_format: str = "text", *, worker: int | None = None) -> None:
    """Send every log record to stderr in `log_format`; `worker` names a --workers process."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "{levelname}{name}{message}",
                style="{",
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp=True,  # ISO 8601, UTC
                static_fields={} if worker is None else {"worker": worker},
            )
        )
        logging.captureWarnings(True)
    else:
        where = "" if worker is None else f"worker {worker} "
        handler.setFormatter(logging.Formatter(TEXT.replace("%(name)s", f"{where}%(name)s")))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
