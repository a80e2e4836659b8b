"""Databases as older schema versions left them, for the migration tests."""

from __future__ import annotations

import contextlib
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


# The PRD that v2_database_with_a_prd holds.
OLD_PRD = "prd-00000000-0000-0000-0000-000000000002"


def v2_database_with_a_prd(path: pathlib.Path) -> None:
    """A database as schema version 2 left it: a PRD without its markdown, and a task."""
    with contextlib.closing(v2_database(path)) as conn, conn:
        conn.execute(
            "INSERT INTO prds (id, path, title, objectives, tech_stack, constraints, parsed_at) "
            "VALUES (?, 'docs/PRD.md', 'Shop', '[\"Take payments\", \"Send receipts\"]', "
            "'[\"Python\"]', '[\"PCI\"]', '2026-01-01T00:00:00.000000Z')",
            (OLD_PRD,),
        )
        conn.execute(
            "INSERT INTO tasks (id, title, status, created_at, updated_at, version) "
            "VALUES ('t1', 'Old task', 1, '2026-01-01T00:00:00.000000Z', "
            "'2026-01-01T00:00:00.000000Z', 1)"
        )
