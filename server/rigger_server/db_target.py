"""What `rig grpc --db` names: a SQLite file or a PostgreSQL URL, and how it is shown.

Every module that opens or reports a database reads these from here, and
nothing here opens anything: the stores (sqlite_store, pg_store), the
PostgreSQL listener and database.py (which picks a store) all import it, and
it imports none of them.
"""

from __future__ import annotations

import pathlib
import urllib.parse

# A SQLite file, or a PostgreSQL URL (a str starting with one of SCHEMES).
Target = pathlib.Path | str

SCHEMES = ("postgresql://", "postgres://")
EXTRA = "pip install 'rigger[postgres]'"


class DatabaseUnusable(Exception):
    """The database cannot serve: unreachable, not initialised, or of another schema version."""


def is_url(target: Target) -> bool:
    """True when `target` is a PostgreSQL URL."""
    return isinstance(target, str) and target.startswith(SCHEMES)


def redact(url: str) -> str:
    """`url` without its password, fit for a banner or a log line."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        credentials, _, hosts = netloc.rpartition("@")
        user, colon, _ = credentials.partition(":")
        netloc = f"{user}{':***' if colon else ''}@{hosts}"
    query = urllib.parse.urlencode(
        [
            (key, "***" if key == "password" else value)
            for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*/:",
    )
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def describe(target: Target) -> str:
    """What a banner says the database is: the file, or the URL without its password."""
    return redact(str(target)) if is_url(target) else str(target)
