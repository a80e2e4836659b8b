"""Databases as older schema versions left them, for the migration tests."""

from __future__ import annotations

import pathlib
import sqlite3

from rigger_server.sqlite_store import _CREATE_V1, _EVENTS_V2


def v2_database(path: pathlib.Path) -> sqlite3.Connection:
    """An empty database at schema version 2; the caller fills it and closes the connection."""
    conn = sqlite3.connect(path)
    conn.executescript(_CREATE_V1)
    conn.execute("DROP TABLE events")
    conn.execute(_EVENTS_V2)
    conn.execute("ALTER TABLE events_v2 RENAME TO events")
    conn.execute("PRAGMA user_version=2")
    return conn
