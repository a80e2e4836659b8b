"""The migration ledger both stores number their steps from, and rows <-> records."""

from __future__ import annotations

import json

import pytest
from rigger_server import pg_store, schema, sqlite_store
from rigger_server.domain import Task, TaskStatus
from rigger_server.schema import LEDGER, TASKS, Step, migrations


def test_each_store_migrates_through_every_ledger_step_it_records_in_ledger_order():
    for dialect, steps in [("sqlite", sqlite_store.MIGRATIONS), ("postgres", pg_store.MIGRATIONS)]:
        recorded = [s for s in LEDGER if getattr(s, dialect) is not None]
        assert [(m.version, m.description) for m in steps] == [
            (getattr(s, dialect), s.description) for s in recorded
        ]


def test_the_versions_databases_in_the_field_record_stay_as_they_shipped():
    # SQLite's user_version and PostgreSQL's rigger.schema_migrations.
    assert [(s.sqlite, s.postgres) for s in LEDGER[:5]] == [
        (1, 1),
        (2, None),
        (3, 2),
        (4, 3),
        (5, 4),
    ]


def test_a_store_without_its_change_for_a_ledger_step_is_refused():
    with pytest.raises(ValueError, match="missing"):
        migrations("postgres", {schema.FIRST_SCHEMA: "", schema.SUBTASK_COUNT: ""})


def test_a_step_a_store_does_not_record_is_refused():
    changes = {step: "" for step in LEDGER}
    with pytest.raises(ValueError, match="not in its ledger"):
        migrations("postgres", changes)


def test_a_ledger_whose_versions_skip_is_refused(monkeypatch):
    skipping = Step("later", sqlite=len(LEDGER) + 2, postgres=None)
    monkeypatch.setattr(schema, "LEDGER", (*LEDGER, skipping))
    changes = {step: "" for step in schema.LEDGER if step.sqlite is not None}
    with pytest.raises(ValueError, match="1, 2, 3"):
        migrations("sqlite", changes)


def test_a_task_row_round_trips_with_its_lists_and_status_but_not_its_subtasks():
    task = Task(
        "t1",
        "T",
        TaskStatus.IN_PROGRESS,
        "c",
        "u",
        3,
        context_files=("a.md", "b.md"),
        dependencies=("t0",),
        subtask_ids=("t2",),
    )
    row = TASKS.row(task, json.dumps)
    assert "subtask_ids" not in TASKS.columns
    assert dict(zip(TASKS.columns, row, strict=True))["context_files"] == '["a.md", "b.md"]'
    assert TASKS.record_from(row, json.loads, subtask_ids=("t2",)) == task
