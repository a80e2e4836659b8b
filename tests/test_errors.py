"""Bad input: the right status code, a message naming the field, and nothing changed.

Every failing call here is followed by a check that the stored tasks are as
they were and that no event was logged. No bad input may end in UNKNOWN or
INTERNAL: each test pins the exact code.

The tests share one server (they run one after another, and each compares the
store with how it found it), so the module starts one process, not forty.
"""

from __future__ import annotations

import grpc
import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from streams import all_tasks, assert_no_events_after, log_head, read_to_error, subscribe

BAD_TITLES = ["", " ", "\t\n  "]
BAD_DATES = ["2025-13-01", "31/12/2025", "2025-2-1", "2025-02-30", "tomorrow", "2025-01-01T00:00"]
UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def stub(shared_stub):
    """A client of the module's shared server."""
    return shared_stub


@pytest.fixture
async def seeded(stub):
    """A task to aim bad requests at, and the state to compare with afterwards."""
    task = (await stub.AddTask(pb.AddTaskRequest(title="Existing", assignee="alice"))).task
    return task, (await all_tasks(stub), await log_head(stub))


async def fails(call, code: grpc.StatusCode, field: str) -> grpc.aio.AioRpcError:
    """Await a unary call that must fail with `code`, naming `field` in its message."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = caught.value
    assert error.code() == code, f"{error.code()}: {error.details()}"
    assert field in (error.details() or ""), error.details()
    return error


async def assert_unchanged(stub, snapshot) -> None:
    tasks, head = snapshot
    assert await all_tasks(stub) == tasks
    await assert_no_events_after(stub, head)


# --- titles -------------------------------------------------------------------


@pytest.mark.parametrize("title", BAD_TITLES, ids=repr)
async def test_add_task_with_empty_or_whitespace_title_is_invalid_argument(stub, seeded, title):
    _, snapshot = seeded
    await fails(
        stub.AddTask(pb.AddTaskRequest(title=title)), grpc.StatusCode.INVALID_ARGUMENT, "title"
    )
    await assert_unchanged(stub, snapshot)


@pytest.mark.parametrize("title", BAD_TITLES, ids=repr)
async def test_update_task_with_empty_or_whitespace_title_is_invalid_argument(stub, seeded, title):
    task, snapshot = seeded
    await fails(
        stub.UpdateTask(pb.UpdateTaskRequest(task_id=task.id, title=title)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "title",
    )
    await assert_unchanged(stub, snapshot)


async def test_a_100_kb_title_is_accepted(stub):
    title = "x" * 100_000
    task = (await stub.AddTask(pb.AddTaskRequest(title=title))).task
    fetched = (await stub.GetTask(pb.GetTaskRequest(task_id=task.id))).task
    assert fetched.title == title


# --- statuses -------------------------------------------------------------------


async def test_update_task_with_unknown_status_number_is_invalid_argument(stub, seeded):
    task, snapshot = seeded
    await fails(
        stub.UpdateTask(pb.UpdateTaskRequest(task_id=task.id, status=42)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "status",
    )
    await assert_unchanged(stub, snapshot)


async def test_update_task_with_status_unspecified_is_invalid_argument(stub, seeded):
    task, snapshot = seeded
    await fails(
        stub.UpdateTask(pb.UpdateTaskRequest(task_id=task.id, status=pb.TASK_STATUS_UNSPECIFIED)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "status",
    )
    await assert_unchanged(stub, snapshot)


async def test_list_tasks_with_unknown_status_number_is_invalid_argument(stub, seeded):
    _, snapshot = seeded
    await fails(
        stub.ListTasks(pb.ListTasksRequest(status=42)), grpc.StatusCode.INVALID_ARGUMENT, "status"
    )
    await assert_unchanged(stub, snapshot)


async def test_a_failed_update_applies_none_of_its_other_fields(stub, seeded):
    task, snapshot = seeded
    await fails(
        stub.UpdateTask(
            pb.UpdateTaskRequest(task_id=task.id, title="Renamed", assignee="bob", status=42)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "status",
    )
    await assert_unchanged(stub, snapshot)


# --- due dates ------------------------------------------------------------------


@pytest.mark.parametrize("due_date", BAD_DATES)
async def test_add_task_with_malformed_due_date_is_invalid_argument(stub, seeded, due_date):
    _, snapshot = seeded
    await fails(
        stub.AddTask(pb.AddTaskRequest(title="Dated", due_date=due_date)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "due_date",
    )
    await assert_unchanged(stub, snapshot)


@pytest.mark.parametrize("due_date", BAD_DATES)
async def test_update_task_with_malformed_due_date_is_invalid_argument(stub, seeded, due_date):
    task, snapshot = seeded
    await fails(
        stub.UpdateTask(pb.UpdateTaskRequest(task_id=task.id, due_date=due_date)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "due_date",
    )
    await assert_unchanged(stub, snapshot)


# --- task ids -------------------------------------------------------------------


def get_call(stub, task_id):
    return stub.GetTask(pb.GetTaskRequest(task_id=task_id))


def update_call(stub, task_id):
    return stub.UpdateTask(pb.UpdateTaskRequest(task_id=task_id, status=pb.TASK_STATUS_COMPLETED))


def delete_call(stub, task_id):
    return stub.DeleteTask(pb.DeleteTaskRequest(task_id=task_id))


BY_ID = pytest.mark.parametrize(
    "call", [get_call, update_call, delete_call], ids=["GetTask", "UpdateTask", "DeleteTask"]
)


@BY_ID
async def test_empty_task_id_is_invalid_argument(stub, seeded, call):
    _, snapshot = seeded
    await fails(call(stub, ""), grpc.StatusCode.INVALID_ARGUMENT, "task_id")
    await assert_unchanged(stub, snapshot)


@BY_ID
async def test_unknown_task_id_is_not_found(stub, seeded, call):
    _, snapshot = seeded
    await fails(call(stub, UNKNOWN_ID), grpc.StatusCode.NOT_FOUND, UNKNOWN_ID)
    await assert_unchanged(stub, snapshot)


async def test_add_task_with_unknown_parent_is_not_found(stub, seeded):
    _, snapshot = seeded
    await fails(
        stub.AddTask(pb.AddTaskRequest(title="Orphan", parent_task_id=UNKNOWN_ID)),
        grpc.StatusCode.NOT_FOUND,
        "parent_task_id",
    )
    await assert_unchanged(stub, snapshot)


async def test_add_task_with_empty_parent_task_id_is_invalid_argument(stub, seeded):
    _, snapshot = seeded
    await fails(
        stub.AddTask(pb.AddTaskRequest(title="Orphan", parent_task_id="")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "parent_task_id",
    )
    await assert_unchanged(stub, snapshot)


# --- subscriptions --------------------------------------------------------------


async def test_subscribe_with_unknown_event_type_is_invalid_argument(stub, seeded):
    _, snapshot = seeded
    call = stub.SubscribeToTaskEvents(pb.SubscribeToTaskEventsRequest(event_types=[1, 99]))
    events, error = await read_to_error(call)
    assert events == []
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "event_types" in error.details()
    await assert_unchanged(stub, snapshot)


async def test_subscribe_after_sequence_beyond_the_newest_event_is_invalid_argument(stub, seeded):
    _, snapshot = seeded
    _, head = snapshot
    events, error = await read_to_error(subscribe(stub, after=head + 1))
    assert events == []
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "after_sequence" in error.details()
    await assert_unchanged(stub, snapshot)


async def test_subscribe_after_sequence_on_an_empty_log_beyond_zero_is_invalid_argument(server):
    async with grpc.aio.insecure_channel(server.address) as channel:
        fresh = rigger_pb2_grpc.RiggerServiceStub(channel)
        events, error = await read_to_error(subscribe(fresh, after=1))
    assert (events, error.code()) == ([], grpc.StatusCode.INVALID_ARGUMENT)
