"""The SQLite store: tasks, the event log, PRDs and schema migrations, on a temporary file."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sqlite3

import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger_server import wire
from rigger_server.domain import EventType, Prd, Task, TaskStatus
from rigger_server.errors import EventTooLarge, VersionConflict
from rigger_server.limits import MAX_EVENT_BYTES
from rigger_server.sqlite_store import _CREATE_V1, SCHEMA_VERSION, SqliteStore
from rigger_server.store import TaskQuery

from unit.drafts import created, new_task


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


# --- tasks -----------------------------------------------------------------------


def _stored(store: SqliteStore, title: str = "t", **fields) -> Task:
    task = new_task(title, **fields)
    store.insert_task(task, created(task))
    return task


def test_a_task_reads_back_with_every_field_intact(store):
    task = new_task(
        "Ünïcödé 🚀",
        assignee="Zoë",
        due_date="2030-02-28",
        source_transcript_id="tr-1",
        source_prd_id="prd-1",
        complexity=5,
        reasoning="because",
        context_files=("a.md", "b.md"),
        dependencies=("x",),
    )
    store.insert_task(task, created(task))
    assert store.get_task(task.id) == task


def test_an_unknown_id_reads_as_none(store):
    assert store.get_task("missing") is None


def test_subtask_ids_are_derived_from_the_children_in_creation_order(store):
    parent = _stored(store, "parent")
    children = [_stored(store, f"c{n}", parent_task_id=parent.id).id for n in range(3)]
    assert store.get_task(parent.id).subtask_ids == tuple(children)
    listed = {t.id: t for t in store.list_tasks(TaskQuery())[0]}
    assert listed[parent.id].subtask_ids == tuple(children)


def test_replacing_at_the_expected_version_writes_the_task_and_its_events(store):
    task = _stored(store)
    renamed = dataclasses.replace(task, title="renamed", version=2)
    [event] = store.replace_task(renamed, 1, created(renamed))
    assert store.get_task(task.id) == renamed
    assert event.sequence == 2


def test_replacing_at_another_version_is_a_conflict_that_writes_nothing(store):
    task = _stored(store)
    with pytest.raises(VersionConflict):
        store.replace_task(dataclasses.replace(task, title="stale", version=3), 2, created(task))
    assert store.get_task(task.id) == task
    assert store.last_sequence() == 1


def test_an_event_larger_than_clients_accept_is_refused_and_nothing_is_written(store):
    task = new_task("\u00e9" * (MAX_EVENT_BYTES // 2))  # two bytes each, plus the rest
    with pytest.raises(EventTooLarge, match=f"at most {MAX_EVENT_BYTES} bytes"):
        store.insert_task(task, created(task))
    assert store.get_task(task.id) is None
    assert store.last_sequence() == 0


def test_an_event_within_the_bound_is_stored(store):
    task = new_task("\u00e9" * (MAX_EVENT_BYTES // 2 - 1000))
    [event] = store.insert_task(task, created(task))
    assert MAX_EVENT_BYTES - 2000 < len(event.payload) <= MAX_EVENT_BYTES


def test_list_tasks_is_newest_first_and_leaves_out_archived_tasks(store):
    first, second = _stored(store, "first"), _stored(store, "second")
    archived = dataclasses.replace(_stored(store, "gone"), status=TaskStatus.ARCHIVED, version=2)
    store.replace_task(archived, 1, [])
    store.replace_task(dataclasses.replace(first, title="updated", version=2), 1, [])
    tasks, total = store.list_tasks(TaskQuery())
    assert [t.id for t in tasks] == [second.id, first.id]  # creation order, not update order
    assert total == 2
    assert [t.title for t in store.list_tasks(TaskQuery(status=TaskStatus.ARCHIVED))[0]] == ["gone"]


def test_list_tasks_filters_by_status_and_assignee_together(store):
    _stored(store, "a todo", assignee="alice")
    doing = _stored(store, "a doing", assignee="alice")
    store.replace_task(dataclasses.replace(doing, status=TaskStatus.IN_PROGRESS, version=2), 1, [])
    _stored(store, "b todo", assignee="bob")
    query = TaskQuery(status=TaskStatus.IN_PROGRESS, assignee="alice")
    assert [t.title for t in store.list_tasks(query)[0]] == ["a doing"]
    assert [t.title for t in store.list_tasks(TaskQuery(assignee="alice"))[0]] == [
        "a doing",
        "a todo",
    ]
    assert store.list_tasks(TaskQuery(assignee="ALICE")) == ([], 0)


def test_list_tasks_pages_with_limit_and_offset_and_counts_every_match(store):
    for n in range(5):
        _stored(store, f"t{n}")

    def page(**query) -> tuple[list[str], int]:
        tasks, total = store.list_tasks(TaskQuery(**query))
        return [t.title for t in tasks], total

    assert page(limit=2) == (["t4", "t3"], 5)
    assert page(limit=2, offset=4) == (["t0"], 5)
    assert page(offset=3) == (["t1", "t0"], 5)
    assert page(offset=9) == ([], 5)


# --- the event log ---------------------------------------------------------------


def test_an_empty_log_ends_at_sequence_0(store):
    assert store.last_sequence() == 0
    assert store.events_after(0, 10) == []


def test_events_read_back_in_pages_with_their_bytes_and_filter_columns(store):
    tasks = [_stored(store, f"t{n}", assignee=f"a{n}") for n in range(5)]
    page = store.events_after(1, 3)
    assert [e.sequence for e in page] == [2, 3, 4]
    assert [(e.task_id, e.assignee, e.event_type) for e in page] == [
        (t.id, t.assignee, EventType.CREATED) for t in tasks[1:4]
    ]
    assert [pb.TaskEvent.FromString(e.payload).sequence for e in page] == [2, 3, 4]
    assert store.last_sequence() == 5


def test_a_page_of_events_stops_once_their_bytes_reach_the_budget(store):
    for n in range(6):
        _stored(store, f"{n} " + "x" * 1000)
    sizes = [len(e.payload) for e in store.events_after(0, 10)]
    budget = sizes[0] + sizes[1] + 1  # reached by the third event
    assert [e.sequence for e in store.events_after(0, 10, budget)] == [1, 2, 3]
    assert [e.sequence for e in store.events_after(2, 10, budget)] == [3, 4, 5]
    assert [e.sequence for e in store.events_after(0, 2, budget)] == [1, 2]


def test_a_page_holds_its_first_event_however_large(store):
    _stored(store, "x" * 5000)
    _stored(store)
    assert [e.sequence for e in store.events_after(0, 10, 100)] == [1]


def test_a_write_undone_inside_a_transaction_leaves_no_gap_in_the_log(store):
    with store.atomic():
        _stored(store, "kept")
        with pytest.raises(ValueError), store.atomic():
            _stored(store, "undone")
            raise ValueError("undo")
        _stored(store, "kept too")
    assert [e.sequence for e in store.events_after(0, 10)] == [1, 2]
    assert [t.title for t in store.list_tasks(TaskQuery())[0]] == ["kept too", "kept"]


def test_everything_written_survives_closing_and_reopening(db):
    first = SqliteStore(db, wire.encode_event)
    task = _stored(first)
    first.close()
    first.close()  # safe twice
    again = SqliteStore(db, wire.encode_event)
    try:
        assert again.get_task(task.id) == task
        assert again.last_sequence() == 1
    finally:
        again.close()


def test_a_parsed_prd_is_stored(store, db):
    prd = Prd("prd-1", "docs/PRD.md", "Title", ("o",), ("t",), ("c",), "2026-01-01T00:00:00Z")
    store.insert_prd(prd)
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT id, title, objectives FROM prds").fetchone()
    assert row == ("prd-1", "Title", '["o"]')


def test_a_database_from_a_newer_rigger_is_refused(db):
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="newer"):
        SqliteStore(db, wire.encode_event)


def _archived(task: Task) -> Task:
    return dataclasses.replace(
        task, status=TaskStatus.ARCHIVED, version=task.version + 1, updated_at="later"
    )


def test_replace_statuses_moves_every_task_and_appends_the_events(store: SqliteStore):
    tasks = [new_task(f"t{n}", assignee="ann") for n in range(3)]
    store.insert_tasks(tasks, [d for t in tasks for d in created(t)])
    gone = [_archived(t) for t in tasks]
    events = store.replace_statuses([(t, 1) for t in gone], [d for t in gone for d in created(t)])
    assert [e.sequence for e in events] == [4, 5, 6]
    for task in gone:
        assert store.get_task(task.id) == task  # status, version, updated_at; the rest kept


def test_replace_statuses_changes_nothing_when_one_task_moved_on(store: SqliteStore):
    tasks = [new_task(f"t{n}") for n in range(3)]
    store.insert_tasks(tasks, [d for t in tasks for d in created(t)])
    store.replace_task(dataclasses.replace(tasks[1], title="moved", version=2), 1, [])
    with pytest.raises(VersionConflict), store.atomic():
        store.replace_statuses([(_archived(t), 1) for t in tasks], created(tasks[0]))
    assert [store.get_task(t.id).status for t in tasks] == [TaskStatus.TODO] * 3
    assert store.last_sequence() == 3
