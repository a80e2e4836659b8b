"""Matching a plan's items to a PRD's tasks (regeneration.py), in process.

The end-to-end behaviour is tests/test_planning.py's and the conformance
cases'; here: the identity rules, and stored items that are hostile or
broken, and plans at their bound.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from rigger_server.domain import Task, TaskStatus
from rigger_server.errors import InvalidArgument
from rigger_server.planner import PlannedTask, TaskPlan
from rigger_server.regeneration import (
    GenerationMode,
    Identity,
    Outcome,
    identity_key,
    plan_identities,
    reconcile,
    requested_mode,
)

NOW = "2026-01-01T00:00:00.000000Z"


def plan_of(*titles: str) -> TaskPlan:
    return TaskPlan(
        tasks=tuple(PlannedTask(title=t, reasoning="r", complexity=3) for t in titles),
        planner="offline",
        model="offline",
    )


def generated(plan: TaskPlan) -> list[Task]:
    """The plan as a first generation stores it."""
    return reconcile("prd-1", plan, [], GenerationMode.SYNC, NOW).created


def outcomes(plan: TaskPlan, existing: list[Task], mode=GenerationMode.SYNC) -> list[str]:
    made = reconcile("prd-1", plan, existing, mode, NOW)
    return [r.outcome.name for r in made.results]


def test_an_identity_ignores_markdown_case_spacing_and_a_closing_full_stop():
    assert identity_key("Ship **the**  `rig` Binary.") == identity_key("ship the rig binary")


def test_repeated_titles_are_told_apart_by_their_place():
    assert plan_identities(plan_of("Ship it", "Test it", "ship it")) == [
        Identity("ship it", 0),
        Identity("test it", 0),
        Identity("ship it", 1),
    ]


@pytest.mark.parametrize(
    "stored",
    [
        "not json",
        "[]",
        '{"key": 3}',
        '{"n": "x", "key": "a"}',
        "[" * 100_000 + "]" * 100_000,
        '"' + "x" * 100_000,
    ],
    ids=["garbage", "a list", "no place", "a bad place", "deep", "huge"],
)
def test_a_stored_item_that_cannot_be_read_is_matched_by_the_tasks_title(stored):
    plan = plan_of("Ship it", "Test it")
    existing = [dataclasses.replace(t, prd_item=stored) for t in generated(plan)]
    assert outcomes(plan, existing) == ["KEPT", "KEPT"]


def test_two_tasks_claiming_one_item_leave_one_live_task_for_it():
    plan = plan_of("Ship it")
    first = generated(plan)[0]
    twin = dataclasses.replace(first, id="twin", created_at="later")
    made = reconcile("prd-1", plan, [first, twin], GenerationMode.SYNC, NOW)
    assert [(r.task.id, r.outcome) for r in made.results] == [
        (first.id, Outcome.KEPT),
        ("twin", Outcome.ARCHIVED),
    ]


def test_thousands_of_tasks_of_one_title_without_identity_keep_their_places():
    count = 10_000
    plan = plan_of(*["Same"] * count)
    existing = [dataclasses.replace(t, prd_item=None) for t in generated(plan)]
    made = reconcile("prd-1", plan, existing, GenerationMode.SYNC, NOW)
    assert [r.task.id for r in made.results] == [t.id for t in existing]
    assert {r.outcome for r in made.results} == {Outcome.KEPT}
    # Their identities are stored now, without new versions or events.
    assert all(after.version == 1 and drafts == [] for after, _, drafts in made.updated)
    assert json.loads(made.updated[-1][0].prd_item or "{}")["n"] == count - 1


def test_replace_recreates_todo_tasks_and_keeps_started_ones():
    plan = plan_of("Ship it", "Test it")
    shipped, tested = generated(plan)
    started = dataclasses.replace(shipped, status=TaskStatus.IN_PROGRESS)
    made = reconcile("prd-1", plan, [started, tested], GenerationMode.REPLACE, NOW)
    assert [(r.task.id == started.id, r.outcome.name) for r in made.results] == [
        (True, "KEPT"),
        (False, "CREATED"),
        (False, "ARCHIVED"),
    ]


def test_archiving_a_gone_task_takes_its_todo_subtasks_and_leaves_started_ones():
    plan = plan_of("Ship it")
    parent = generated(plan_of("Gone"))[0]
    child = dataclasses.replace(parent, id="child", parent_task_id=parent.id, prd_item=None)
    grandchild = dataclasses.replace(child, id="grandchild", parent_task_id="child")
    started = dataclasses.replace(child, id="started", status=TaskStatus.IN_PROGRESS)
    made = reconcile("prd-1", plan, [parent, child, grandchild, started], GenerationMode.SYNC, NOW)
    assert [task.id for task, _ in made.archived] == [parent.id, "child", "grandchild"]
    assert made.archived_ids == [parent.id]


@pytest.mark.parametrize(
    ("mode", "replace_existing", "expected"),
    [
        (0, False, GenerationMode.CREATE),
        (0, True, GenerationMode.REPLACE),
        (2, True, GenerationMode.REPLACE),
        (3, False, GenerationMode.SYNC),
    ],
)
def test_the_requested_mode_follows_replace_existing_when_unset(mode, replace_existing, expected):
    assert requested_mode(mode, replace_existing) is expected


@pytest.mark.parametrize(("mode", "field"), [(3, "replace_existing"), (1, "replace_existing")])
def test_replace_existing_with_another_mode_is_invalid_argument(mode, field):
    with pytest.raises(InvalidArgument) as caught:
        requested_mode(mode, True)
    assert caught.value.field == field


@pytest.mark.parametrize("mode", [4, 2**31 - 1, -1])
def test_an_unknown_mode_is_invalid_argument_naming_mode(mode):
    with pytest.raises(InvalidArgument) as caught:
        requested_mode(mode, False)
    assert caught.value.field == "mode"
