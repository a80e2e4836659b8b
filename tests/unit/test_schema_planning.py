"""A version 2 database is migrated, keeping its PRDs and tasks."""

from __future__ import annotations

import contextlib
import pathlib
import sqlite3

from rigger_server import wire
from rigger_server.sqlite_store import SCHEMA_VERSION, SqliteStore
from schemas import v2_database

OLD_PRD = "prd-00000000-0000-0000-0000-000000000002"


def _v2_database(path: pathlib.Path) -> None:
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


def test_a_version_2_database_is_migrated_keeping_its_prds_and_tasks(tmp_path):
    db = tmp_path / "tasks.db"
    _v2_database(db)
    store = SqliteStore(db, wire.encode_event)
    try:
        prd = store.get_prd(OLD_PRD)
        task = store.get_task("t1")
        assert store.enhancements_of("t1") == []
        assert store.comprehension_tests_of("t1") == []
    finally:
        store.close()
    assert SCHEMA_VERSION == 4
    assert prd is not None
    assert (prd.title, prd.objectives, prd.markdown, prd.resolved_path) == (
        "Shop",
        ("Take payments", "Send receipts"),
        None,
        None,
    )
    assert task is not None and task.title == "Old task"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
