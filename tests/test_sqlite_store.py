"""The SQLite store: its schema migrations."""

from __future__ import annotations

import json
import pathlib
import sqlite3

from rigger.v1 import rigger_pb2 as pb
from rigger_server import wire
from rigger_server.sqlite_store import _CREATE_V1, SCHEMA_VERSION, SqliteStore


def _v1_database(path: pathlib.Path) -> None:
    """A database as Rigger's first schema wrote it: one task, its CREATED event as JSON."""
    task = {
        "id": "t1",
        "title": "Old task",
        "status": 1,
        "assignee": "Alice",
        "due_date": "2025-12-31",
        "source_transcript_id": None,
        "source_prd_id": None,
        "parent_task_id": None,
        "subtask_ids": [],
        "complexity": None,
        "reasoning": None,
        "context_files": ["a.md"],
        "dependencies": [],
        "created_at": "2026-01-01T00:00:00.000000Z",
        "updated_at": "2026-01-01T00:00:00.000000Z",
        "version": 1,
    }
    with sqlite3.connect(path) as conn:
        conn.executescript(_CREATE_V1)
        conn.execute(
            "INSERT INTO events (sequence, event_id, timestamp, event_type, task_id, task, actor, "
            "metadata) VALUES (1, 'e1', '2026-01-01T00:00:00.000000Z', 1, 't1', ?, NULL, ?)",
            (json.dumps(task), json.dumps({"k": "v"})),
        )
        conn.execute("PRAGMA user_version=1")


def test_a_first_schema_database_is_migrated_and_its_log_replays_the_same_events(tmp_path):
    db = tmp_path / "tasks.db"
    _v1_database(db)
    store = SqliteStore(db, wire.encode_event)
    try:
        [event] = store.events_after(0, 10)
    finally:
        store.close()
    message = pb.TaskEvent.FromString(event.payload)
    assert (message.sequence, message.event_id, message.event_type) == (1, "e1", 1)
    assert (message.task.title, message.task.assignee, message.task.due_date) == (
        "Old task",
        "Alice",
        "2025-12-31",
    )
    assert list(message.task.context_files) == ["a.md"]
    assert dict(message.metadata) == {"k": "v"}
    assert (event.event_type, event.assignee, event.task_id) == (1, "Alice", "t1")
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_opening_a_current_database_writes_nothing(tmp_path):
    db = tmp_path / "tasks.db"
    SqliteStore(db, wire.encode_event).close()
    before = db.stat().st_mtime_ns
    SqliteStore(db, wire.encode_event).close()
    assert db.stat().st_mtime_ns == before
