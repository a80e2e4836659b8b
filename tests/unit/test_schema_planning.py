"""Older databases (versions 2 and 4) are migrated, keeping their PRDs and tasks."""

from __future__ import annotations

import contextlib
import pathlib
import sqlite3

from rigger_server import wire
from rigger_server.sqlite_store import (
    _PLANNING_V4,
    _SUBTASK_COUNT_V3,
    SCHEMA_VERSION,
    SqliteStore,
)
from schemas import OLD_PRD, v2_database, v2_database_with_a_prd


def test_a_version_2_database_is_migrated_keeping_its_prds_and_tasks(tmp_path):
    db = tmp_path / "tasks.db"
    v2_database_with_a_prd(db)
    store = SqliteStore(db, wire.encode_event)
    try:
        prd = store.get_prd(OLD_PRD)
        task = store.get_task("t1")
        assert store.enhancements_of("t1") == []
        assert store.comprehension_tests_of("t1") == []
    finally:
        store.close()
    assert SCHEMA_VERSION == 5
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


def _v4_database(path: pathlib.Path) -> None:
    """A database as schema version 4 left it: a generated task, with no PRD item kept."""
    with contextlib.closing(v2_database(path)) as conn, conn:
        for statement in (*_SUBTASK_COUNT_V3, *_PLANNING_V4.split(";")):
            conn.execute(statement)
        conn.execute(
            "INSERT INTO tasks (id, title, status, source_prd_id, created_at, updated_at, "
            "version) VALUES ('t1', 'Take payments', 2, 'prd-1', "
            "'2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z', 3)"
        )
        conn.execute("PRAGMA user_version=4")


def test_a_version_4_database_gains_the_prd_item_column_and_keeps_its_tasks(tmp_path):
    db = tmp_path / "tasks.db"
    _v4_database(db)
    store = SqliteStore(db, wire.encode_event)
    try:
        task = store.get_task("t1")
    finally:
        store.close()
    assert task is not None
    assert (task.title, task.version, task.source_prd_id, task.prd_item) == (
        "Take payments",
        3,
        "prd-1",
        None,
    )
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
        columns = [row[1] for row in conn.execute("PRAGMA table_info(tasks)")]
    assert "prd_item" in columns
