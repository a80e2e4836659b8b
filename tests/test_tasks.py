"""Unary task RPCs: AddTask, UpdateTask, GetTask, DeleteTask and ListTasks.

Tests about single tasks share one server per module; ListTasks tests each get
a fresh server with an empty store (`empty_stub`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from streams import add, is_rfc3339_utc

TODO = pb.TASK_STATUS_TODO
IN_PROGRESS = pb.TASK_STATUS_IN_PROGRESS
COMPLETED = pb.TASK_STATUS_COMPLETED
ARCHIVED = pb.TASK_STATUS_ARCHIVED


@pytest.fixture
def stub(shared_stub):
    """A client of the module's shared server: other tests' tasks are there too."""
    return shared_stub


@pytest.fixture
async def empty_stub(server) -> AsyncIterator[rigger_pb2_grpc.RiggerServiceStub]:
    """A client of a fresh server whose store is empty."""
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield rigger_pb2_grpc.RiggerServiceStub(channel)


async def get(stub, task_id) -> pb.Task:
    return (await stub.GetTask(pb.GetTaskRequest(task_id=task_id))).task


async def update(stub, task_id, **fields) -> pb.Task:
    return (await stub.UpdateTask(pb.UpdateTaskRequest(task_id=task_id, **fields))).task


async def titles(stub, **query) -> list[str]:
    reply = await stub.ListTasks(pb.ListTasksRequest(**query))
    return [t.title for t in reply.tasks]


# --- AddTask ------------------------------------------------------------------


async def test_add_task_creates_a_todo_task_at_version_1(stub):
    task = await add(stub, "Write the README")
    assert task.title == "Write the README"
    assert task.status == TODO
    assert task.version == 1


async def test_add_task_assigns_a_unique_uuid_id(stub):
    first = await add(stub, "one")
    second = await add(stub, "two")
    assert first.id != second.id
    uuid.UUID(first.id)
    uuid.UUID(second.id)


async def test_add_task_sets_created_at_equal_to_updated_at_in_rfc3339_utc(stub):
    task = await add(stub)
    assert is_rfc3339_utc(task.created_at), task.created_at
    assert task.created_at == task.updated_at


async def test_add_task_stores_assignee_due_date_and_source_prd_id(stub):
    task = await add(stub, assignee="alice", due_date="2025-12-31", source_prd_id="prd-123")
    assert (task.assignee, task.due_date, task.source_prd_id) == ("alice", "2025-12-31", "prd-123")
    assert await get(stub, task.id) == task


async def test_add_task_without_optional_fields_leaves_them_absent(stub):
    task = await get(stub, (await add(stub)).id)
    for field in ("assignee", "due_date", "source_prd_id", "parent_task_id"):
        assert not task.HasField(field), field
    assert list(task.subtask_ids) == []


async def test_add_task_with_parent_stores_parent_task_id(stub):
    parent = await add(stub, "parent")
    child = await add(stub, "child", parent_task_id=parent.id)
    assert child.parent_task_id == parent.id
    assert (await get(stub, child.id)).parent_task_id == parent.id


async def test_parent_lists_its_subtasks_in_creation_order(stub):
    parent = await add(stub, "parent")
    children = [(await add(stub, f"child {i}", parent_task_id=parent.id)).id for i in range(3)]
    assert list((await get(stub, parent.id)).subtask_ids) == children


async def test_parent_subtask_ids_are_listed_by_list_tasks_too(stub):
    parent = await add(stub, "parent")
    child = await add(stub, "child", parent_task_id=parent.id)
    listed = {t.id: t for t in (await stub.ListTasks(pb.ListTasksRequest())).tasks}
    assert list(listed[parent.id].subtask_ids) == [child.id]


async def test_adding_a_subtask_does_not_change_the_parents_version(stub):
    parent = await add(stub, "parent")
    await add(stub, "child", parent_task_id=parent.id)
    after = await get(stub, parent.id)
    assert after.version == parent.version == 1
    assert after.updated_at == parent.updated_at


# --- GetTask ------------------------------------------------------------------


async def test_get_task_returns_the_task_as_added(stub):
    task = await add(stub, "Fetch me", assignee="bob")
    assert await get(stub, task.id) == task


async def test_get_task_returns_archived_tasks(stub):
    task = await add(stub)
    await stub.DeleteTask(pb.DeleteTaskRequest(task_id=task.id))
    fetched = await get(stub, task.id)
    assert fetched.id == task.id
    assert fetched.status == ARCHIVED


# --- UpdateTask -----------------------------------------------------------------


async def test_update_sets_only_the_fields_present(stub):
    task = await add(stub, "Keep me", assignee="alice", due_date="2025-01-02")
    updated = await update(stub, task.id, status=IN_PROGRESS)
    assert updated.status == IN_PROGRESS
    assert (updated.title, updated.assignee, updated.due_date) == (
        "Keep me",
        "alice",
        "2025-01-02",
    )


async def test_update_increments_version_by_one(stub):
    task = await add(stub)
    first = await update(stub, task.id, status=IN_PROGRESS)
    second = await update(stub, task.id, assignee="alice")
    assert (first.version, second.version) == (2, 3)


async def test_update_advances_updated_at_and_keeps_created_at(stub):
    task = await add(stub)
    updated = await update(stub, task.id, status=IN_PROGRESS)
    assert updated.created_at == task.created_at
    assert is_rfc3339_utc(updated.updated_at)
    assert updated.updated_at >= task.updated_at


async def test_update_returns_the_task_as_stored(stub):
    task = await add(stub)
    updated = await update(stub, task.id, status=COMPLETED, assignee="carol")
    assert await get(stub, task.id) == updated


async def test_update_can_set_every_known_status(stub):
    task = await add(stub)
    for status in range(2, 11):
        assert (await update(stub, task.id, status=status)).status == status


async def test_update_with_empty_assignee_unassigns(stub):
    task = await add(stub, assignee="alice")
    updated = await update(stub, task.id, assignee="")
    assert not updated.HasField("assignee")
    assert not (await get(stub, task.id)).HasField("assignee")


async def test_update_with_empty_due_date_clears_it(stub):
    task = await add(stub, due_date="2025-06-30")
    updated = await update(stub, task.id, due_date="")
    assert not updated.HasField("due_date")
    assert not (await get(stub, task.id)).HasField("due_date")


async def test_update_sets_a_due_date(stub):
    task = await add(stub)
    assert (await update(stub, task.id, due_date="2024-02-29")).due_date == "2024-02-29"


async def test_update_can_rename_the_title(stub):
    task = await add(stub, "Old name")
    updated = await update(stub, task.id, title="New name")
    assert updated.title == "New name"
    assert (await get(stub, task.id)).title == "New name"


async def test_update_that_changes_nothing_keeps_the_version_and_updated_at(stub):
    task = await add(stub, "Same", assignee="alice")
    unchanged = await update(stub, task.id, title="Same", status=TODO, assignee="alice")
    assert unchanged == task
    assert await get(stub, task.id) == task


async def test_update_with_no_fields_changes_nothing(stub):
    task = await add(stub)
    assert await update(stub, task.id) == task


async def test_update_with_matching_expected_version_applies(stub):
    task = await add(stub)
    updated = await update(stub, task.id, status=IN_PROGRESS, expected_version=1)
    assert (updated.status, updated.version) == (IN_PROGRESS, 2)


async def test_update_with_stale_expected_version_is_aborted_and_changes_nothing(stub):
    task = await add(stub)
    current = await update(stub, task.id, status=IN_PROGRESS)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await update(stub, task.id, assignee="mallory", expected_version=1)
    assert caught.value.code() == grpc.StatusCode.ABORTED
    assert await get(stub, task.id) == current


async def test_update_of_an_archived_task_applies(stub):
    task = await add(stub)
    await stub.DeleteTask(pb.DeleteTaskRequest(task_id=task.id))
    revived = await update(stub, task.id, status=TODO)
    assert (revived.status, revived.version) == (TODO, 3)


# --- DeleteTask -----------------------------------------------------------------


async def test_delete_task_archives_the_task_and_reports_success(stub):
    task = await add(stub)
    reply = await stub.DeleteTask(pb.DeleteTaskRequest(task_id=task.id))
    assert reply.success is True
    archived = await get(stub, task.id)
    assert archived.status == ARCHIVED
    assert archived.version == 2


async def test_deleting_an_archived_task_again_succeeds_and_changes_nothing(stub):
    task = await add(stub)
    await stub.DeleteTask(pb.DeleteTaskRequest(task_id=task.id))
    archived = await get(stub, task.id)
    reply = await stub.DeleteTask(pb.DeleteTaskRequest(task_id=task.id))
    assert reply.success is True
    assert await get(stub, task.id) == archived


# --- ListTasks ------------------------------------------------------------------


async def test_list_tasks_on_an_empty_store_is_empty(empty_stub):
    reply = await empty_stub.ListTasks(pb.ListTasksRequest())
    assert list(reply.tasks) == []
    assert reply.total_count == 0


async def test_list_tasks_returns_newest_first(empty_stub):
    for name in ("first", "second", "third"):
        await add(empty_stub, name)
    assert await titles(empty_stub) == ["third", "second", "first"]


async def test_list_tasks_order_is_creation_order_not_update_order(empty_stub):
    first = await add(empty_stub, "first")
    await add(empty_stub, "second")
    await update(empty_stub, first.id, status=IN_PROGRESS)
    assert await titles(empty_stub) == ["second", "first"]


async def test_list_tasks_leaves_out_archived_tasks(empty_stub):
    await add(empty_stub, "kept")
    gone = await add(empty_stub, "gone")
    await empty_stub.DeleteTask(pb.DeleteTaskRequest(task_id=gone.id))
    reply = await empty_stub.ListTasks(pb.ListTasksRequest())
    assert [t.title for t in reply.tasks] == ["kept"]
    assert reply.total_count == 1


async def test_list_tasks_with_status_archived_lists_only_archived_tasks(empty_stub):
    await add(empty_stub, "kept")
    gone = await add(empty_stub, "gone")
    await empty_stub.DeleteTask(pb.DeleteTaskRequest(task_id=gone.id))
    assert await titles(empty_stub, status=ARCHIVED) == ["gone"]


async def test_list_tasks_filters_by_status(empty_stub):
    await add(empty_stub, "todo")
    doing = await add(empty_stub, "doing")
    await update(empty_stub, doing.id, status=IN_PROGRESS)
    assert await titles(empty_stub, status=IN_PROGRESS) == ["doing"]
    assert await titles(empty_stub, status=TODO) == ["todo"]


async def test_list_tasks_filters_by_assignee(empty_stub):
    await add(empty_stub, "alice's", assignee="alice")
    await add(empty_stub, "bob's", assignee="bob")
    await add(empty_stub, "nobody's")
    assert await titles(empty_stub, assignee="alice") == ["alice's"]


async def test_list_tasks_status_and_assignee_filters_combine(empty_stub):
    await add(empty_stub, "alice todo", assignee="alice")
    alice_doing = await add(empty_stub, "alice doing", assignee="alice")
    bob_doing = await add(empty_stub, "bob doing", assignee="bob")
    for task in (alice_doing, bob_doing):
        await update(empty_stub, task.id, status=IN_PROGRESS)
    reply = await empty_stub.ListTasks(pb.ListTasksRequest(status=IN_PROGRESS, assignee="alice"))
    assert [t.title for t in reply.tasks] == ["alice doing"]
    assert reply.total_count == 1


async def test_list_tasks_archived_status_combines_with_assignee(empty_stub):
    for who in ("alice", "bob"):
        task = await add(empty_stub, f"{who} archived", assignee=who)
        await empty_stub.DeleteTask(pb.DeleteTaskRequest(task_id=task.id))
    assert await titles(empty_stub, status=ARCHIVED, assignee="bob") == ["bob archived"]


async def test_list_tasks_status_unspecified_means_no_status_filter(empty_stub):
    await add(empty_stub, "todo")
    doing = await add(empty_stub, "doing")
    await update(empty_stub, doing.id, status=IN_PROGRESS)
    gone = await add(empty_stub, "gone")
    await empty_stub.DeleteTask(pb.DeleteTaskRequest(task_id=gone.id))
    unspecified = await empty_stub.ListTasks(pb.ListTasksRequest(status=pb.TASK_STATUS_UNSPECIFIED))
    assert [t.title for t in unspecified.tasks] == ["doing", "todo"]
    assert unspecified.total_count == 2


async def test_list_tasks_limit_and_offset_page_through_newest_first(empty_stub):
    for i in range(5):
        await add(empty_stub, f"task {i}")
    assert await titles(empty_stub, limit=2) == ["task 4", "task 3"]
    assert await titles(empty_stub, limit=2, offset=2) == ["task 2", "task 1"]
    assert await titles(empty_stub, limit=2, offset=4) == ["task 0"]


async def test_list_tasks_offset_without_limit_skips_the_newest(empty_stub):
    for i in range(3):
        await add(empty_stub, f"task {i}")
    assert await titles(empty_stub, offset=1) == ["task 1", "task 0"]


async def test_list_tasks_limit_zero_means_no_limit(empty_stub):
    for i in range(3):
        await add(empty_stub, f"task {i}")
    assert await titles(empty_stub, limit=0) == ["task 2", "task 1", "task 0"]


async def test_list_tasks_total_count_counts_all_matches_not_just_the_page(empty_stub):
    for i in range(5):
        await add(empty_stub, f"task {i}", assignee="alice")
    await add(empty_stub, "other", assignee="bob")
    reply = await empty_stub.ListTasks(pb.ListTasksRequest(assignee="alice", limit=2, offset=1))
    assert len(reply.tasks) == 2
    assert reply.total_count == 5


async def test_list_tasks_offset_past_the_end_returns_an_empty_page_with_the_total(empty_stub):
    for i in range(2):
        await add(empty_stub, f"task {i}")
    reply = await empty_stub.ListTasks(pb.ListTasksRequest(limit=10, offset=10))
    assert list(reply.tasks) == []
    assert reply.total_count == 2
