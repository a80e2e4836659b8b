"""TaskBook, in process: validation, the events each change commits, versions, PRDs.

The wire contract (status codes, what clients see) is the conformance suite's;
these tests pin the domain rules behind it, fast, on a temporary store.
"""

from __future__ import annotations

import asyncio
import pathlib
import uuid

import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger_server.domain import TaskStatus
from rigger_server.errors import InvalidArgument, NotFound, PermissionDenied, VersionConflict
from rigger_server.events import Subscription
from rigger_server.tasks import NewTask, TaskChange

from unit.drafts import published

CREATED = pb.TASK_EVENT_TYPE_CREATED
UPDATED = pb.TASK_EVENT_TYPE_UPDATED
DELETED = pb.TASK_EVENT_TYPE_DELETED
STATUS_CHANGED = pb.TASK_EVENT_TYPE_STATUS_CHANGED
ASSIGNED = pb.TASK_EVENT_TYPE_ASSIGNED
BAD_DATES = ["2025-13-01", "31/12/2025", "2025-2-1", "2025-02-30", "tomorrow", "2025-01-01T00:00"]


# --- AddTask ---------------------------------------------------------------------


async def test_a_new_task_is_todo_at_version_1_with_a_uuid_id(book):
    task = await book.add_task(NewTask("Write the README"))
    assert (task.title, task.status, task.version) == ("Write the README", TaskStatus.TODO, 1)
    assert str(uuid.UUID(task.id)) == task.id


async def test_every_new_task_gets_its_own_id(book):
    tasks = await asyncio.gather(*(book.add_task(NewTask(f"t{i}")) for i in range(20)))
    assert len({t.id for t in tasks}) == 20


async def test_a_new_task_was_updated_when_it_was_created(book):
    task = await book.add_task(NewTask("t"))
    assert task.created_at == task.updated_at
    assert task.created_at.endswith("Z")


async def test_adding_a_task_publishes_one_created_event_carrying_it(book, watch: Subscription):
    task = await book.add_task(NewTask("t", assignee="alice", due_date="2025-12-31"))
    [event] = await published(watch)
    assert (event.event_type, event.sequence, event.task.id) == (CREATED, 1, task.id)
    assert (event.task.assignee, event.task.due_date) == ("alice", "2025-12-31")


async def test_an_empty_assignee_on_a_new_task_means_unassigned(book):
    assert (await book.add_task(NewTask("t", assignee=""))).assignee is None


@pytest.mark.parametrize("title", ["", " ", "\t\n ", "\u3000\u2003"], ids=repr)
async def test_an_empty_or_blank_title_is_refused_naming_the_field(book, title):
    with pytest.raises(InvalidArgument) as refused:
        await book.add_task(NewTask(title))
    assert refused.value.field == "title"
    assert await book.last_sequence() == 0


@pytest.mark.parametrize("due_date", BAD_DATES)
async def test_a_due_date_that_is_not_a_zero_padded_calendar_date_is_refused(book, due_date):
    with pytest.raises(InvalidArgument) as refused:
        await book.add_task(NewTask("t", due_date=due_date))
    assert refused.value.field == "due_date"


async def test_a_leap_day_is_a_due_date(book):
    assert (await book.add_task(NewTask("t", due_date="2024-02-29"))).due_date == "2024-02-29"


async def test_an_empty_parent_id_is_refused_and_an_unknown_one_is_not_found(book):
    with pytest.raises(InvalidArgument) as refused:
        await book.add_task(NewTask("t", parent_task_id=""))
    assert refused.value.field == "parent_task_id"
    with pytest.raises(NotFound, match="parent_task_id"):
        await book.add_task(NewTask("t", parent_task_id=str(uuid.uuid4())))
    assert await book.last_sequence() == 0


async def test_a_parent_lists_its_subtasks_in_creation_order(book):
    parent = await book.add_task(NewTask("parent"))
    children = [await book.add_task(NewTask(f"c{i}", parent_task_id=parent.id)) for i in range(3)]
    assert [c.parent_task_id for c in children] == [parent.id] * 3
    assert (await book.get_task(parent.id)).subtask_ids == tuple(c.id for c in children)


async def test_adding_a_subtask_leaves_the_parent_unchanged_and_emits_only_the_childs_event(
    book, watch
):
    parent = await book.add_task(NewTask("parent"))
    await published(watch)
    child = await book.add_task(NewTask("child", parent_task_id=parent.id))
    [event] = await published(watch)
    assert (event.event_type, event.task.id) == (CREATED, child.id)
    after = await book.get_task(parent.id)
    assert (after.version, after.updated_at) == (parent.version, parent.updated_at)


# --- UpdateTask ------------------------------------------------------------------


async def test_an_update_changes_only_the_fields_it_sets(book):
    task = await book.add_task(NewTask("keep", assignee="alice", due_date="2025-01-02"))
    updated = await book.update_task(TaskChange(task.id, status=TaskStatus.IN_PROGRESS))
    assert updated.status == TaskStatus.IN_PROGRESS
    assert (updated.title, updated.assignee, updated.due_date) == ("keep", "alice", "2025-01-02")


async def test_each_change_bumps_the_version_by_one_and_advances_updated_at(book):
    task = await book.add_task(NewTask("t"))
    first = await book.update_task(TaskChange(task.id, status=TaskStatus.IN_PROGRESS))
    second = await book.update_task(TaskChange(task.id, assignee="alice"))
    assert (first.version, second.version) == (2, 3)
    assert task.updated_at <= first.updated_at <= second.updated_at
    assert second.created_at == task.created_at


async def test_an_update_returns_the_task_as_stored(book):
    task = await book.add_task(NewTask("t"))
    updated = await book.update_task(TaskChange(task.id, status=TaskStatus.COMPLETED, title="u"))
    assert await book.get_task(task.id) == updated


async def test_a_status_change_emits_updated_then_status_changed_naming_the_old_status(book, watch):
    task = await book.add_task(NewTask("t"))
    await published(watch)
    await book.update_task(TaskChange(task.id, status=TaskStatus.IN_PROGRESS))
    updated, changed = await published(watch)
    assert (updated.event_type, updated.metadata["changed_fields"]) == (UPDATED, "status")
    assert (changed.event_type, changed.metadata["previous_status"]) == (
        STATUS_CHANGED,
        "TASK_STATUS_TODO",
    )


async def test_changing_status_and_assignee_emits_three_events_in_order_with_one_version(
    book, watch
):
    task = await book.add_task(NewTask("t", assignee="alice"))
    await published(watch)
    await book.update_task(TaskChange(task.id, status=TaskStatus.COMPLETED, assignee="bob"))
    events = await published(watch)
    assert [e.event_type for e in events] == [UPDATED, STATUS_CHANGED, ASSIGNED]
    assert [e.sequence for e in events] == [2, 3, 4]
    assert events[0].metadata["changed_fields"] == "status,assignee"
    assert events[2].metadata["previous_assignee"] == "alice"
    assert {e.task.version for e in events} == {2}


async def test_unassigning_emits_assigned_naming_the_previous_assignee(book, watch):
    task = await book.add_task(NewTask("t", assignee="alice"))
    await published(watch)
    updated = await book.update_task(TaskChange(task.id, assignee=""))
    _, assigned = await published(watch)
    assert updated.assignee is None
    assert assigned.metadata["previous_assignee"] == "alice"
    assert not assigned.task.HasField("assignee")


async def test_an_empty_due_date_clears_it(book):
    task = await book.add_task(NewTask("t", due_date="2025-06-30"))
    assert (await book.update_task(TaskChange(task.id, due_date=""))).due_date is None


async def test_every_known_status_can_be_set(book):
    task = await book.add_task(NewTask("t"))
    for status in list(TaskStatus)[2:]:
        assert (await book.update_task(TaskChange(task.id, status=status))).status == status


async def test_an_update_that_changes_nothing_keeps_the_version_and_emits_nothing(book):
    task = await book.add_task(NewTask("same", assignee="alice"))
    same = TaskChange(task.id, title="same", status=TaskStatus.TODO, assignee="alice")
    assert await book.update_task(same) == task
    assert await book.update_task(TaskChange(task.id)) == task
    assert await book.last_sequence() == 1


async def test_an_archived_task_can_be_updated(book):
    task = await book.add_task(NewTask("t"))
    await book.delete_task(task.id)
    revived = await book.update_task(TaskChange(task.id, status=TaskStatus.TODO))
    assert (revived.status, revived.version) == (TaskStatus.TODO, 3)


async def test_a_stale_expected_version_is_a_conflict_that_changes_nothing(book):
    task = await book.add_task(NewTask("t"))
    current = await book.update_task(TaskChange(task.id, title="u", expected_version=1))
    with pytest.raises(VersionConflict, match="version 2"):
        await book.update_task(TaskChange(task.id, title="stale", expected_version=1))
    assert await book.get_task(task.id) == current
    assert await book.last_sequence() == 2


async def test_racing_writers_with_expected_version_win_exactly_once_per_version(book, watch):
    task = await book.add_task(NewTask("contended"))
    version = task.version
    for round_number in range(15):
        outcomes = await asyncio.gather(
            *(
                book.update_task(
                    TaskChange(task.id, title=f"{round_number}/{w}", expected_version=version)
                )
                for w in range(6)
            ),
            return_exceptions=True,
        )
        winners = [o for o in outcomes if not isinstance(o, BaseException)]
        assert len(winners) == 1, outcomes
        assert all(isinstance(o, VersionConflict) for o in outcomes if o not in winners)
        version = winners[0].version
    assert (await book.get_task(task.id)).version == 16
    events = [e for e in book.store.events_after(0, 100) if e.event_type == UPDATED]
    assert [pb.TaskEvent.FromString(e.payload).task.version for e in events] == list(range(2, 17))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (dict(status=42), "status"),
        (dict(status=0), "status"),
        (dict(title=" "), "title"),
        (dict(due_date="2025-2-1"), "due_date"),
    ],
    ids=["unknown-status", "unspecified-status", "blank-title", "bad-date"],
)
async def test_an_invalid_update_applies_none_of_its_fields(book, change, field):
    task = await book.add_task(NewTask("t"))
    fields = {"title": "renamed", "assignee": "bob", **change}
    with pytest.raises(InvalidArgument) as refused:
        await book.update_task(TaskChange(task.id, **fields))
    assert refused.value.field == field
    assert await book.get_task(task.id) == task
    assert await book.last_sequence() == 1


@pytest.mark.parametrize("operation", ["get", "update", "delete"])
async def test_an_empty_task_id_is_refused_and_an_unknown_one_is_not_found(book, operation):
    calls = {
        "get": book.get_task,
        "update": lambda task_id: book.update_task(TaskChange(task_id, title="x")),
        "delete": book.delete_task,
    }
    with pytest.raises(InvalidArgument) as refused:
        await calls[operation]("  ")
    assert refused.value.field == "task_id"
    with pytest.raises(NotFound, match="no-such-task"):
        await calls[operation]("no-such-task")


# --- DeleteTask ------------------------------------------------------------------


async def test_deleting_archives_the_task_and_emits_deleted_naming_the_old_status(book, watch):
    task = await book.add_task(NewTask("t"))
    await book.update_task(TaskChange(task.id, status=TaskStatus.IN_PROGRESS))
    await book.delete_task(task.id)
    deleted = (await published(watch))[-1]  # everything queued so far, in commit order
    assert (deleted.event_type, deleted.task.status, deleted.task.version) == (
        DELETED,
        pb.TASK_STATUS_ARCHIVED,
        3,
    )
    assert deleted.metadata["previous_status"] == "TASK_STATUS_IN_PROGRESS"
    assert (await book.get_task(task.id)).status == TaskStatus.ARCHIVED


async def test_deleting_an_archived_task_again_does_nothing(book):
    task = await book.add_task(NewTask("t"))
    await book.delete_task(task.id)
    archived = await book.get_task(task.id)
    await book.delete_task(task.id)
    assert await book.get_task(task.id) == archived
    assert await book.last_sequence() == 2


# --- PRDs ------------------------------------------------------------------------


async def test_a_parsed_prd_gets_a_new_id_each_time_and_emits_nothing(book, tmp_path):
    (tmp_path / "PRD.md").write_text("# Rigger\n\n## Objectives\n- ship\n")
    first, _ = await book.parse_prd("PRD.md")
    second, _ = await book.parse_prd("PRD.md")
    assert (first.title, first.objectives) == ("Rigger", ("ship",))
    assert first.id.startswith("prd-") and second.id.startswith("prd-")
    assert first.id != second.id
    assert await book.last_sequence() == 0


async def test_a_prd_outside_the_project_root_is_refused(book, tmp_path: pathlib.Path):
    (tmp_path.parent / "outside.md").write_text("# Secret\n")
    with pytest.raises(PermissionDenied):
        await book.parse_prd("../outside.md")
