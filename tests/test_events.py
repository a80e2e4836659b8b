"""Event rules: what each change emits, filters, order, and the two-way TaskEventStream.

Most tests subscribe with `after_sequence=0` on a fresh server, which delivers
every event of the log whenever the server registers the subscription. Tests
about live-only subscriptions first wait for the stream's headers, which the
server sends once the subscription is registered.
"""

from __future__ import annotations

import asyncio
import uuid

import grpc
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from streams import (
    ASSIGNED,
    CREATED,
    DELETED,
    STATUS_CHANGED,
    UPDATED,
    add,
    assert_no_events_after,
    is_rfc3339_utc,
    kinds,
    read_events,
    read_to_error,
    read_until,
    replay_all,
    sequences,
    subscribe,
    subscribe_live,
)

TODO = pb.TASK_STATUS_TODO
ERROR_WAIT = 5.0  # a stream that should end at once with an error; keeps failures quick
IN_PROGRESS = pb.TASK_STATUS_IN_PROGRESS


async def update(stub, task_id, **fields) -> pb.Task:
    return (await stub.UpdateTask(pb.UpdateTaskRequest(task_id=task_id, **fields))).task


async def marker(stub, **fields) -> pb.Task:
    """A task whose CREATED event marks "everything before has been delivered"."""
    return await add(stub, "marker", **fields)


# --- what each change emits -----------------------------------------------------


async def test_add_task_emits_exactly_one_created_event_carrying_the_task(stub):
    task = await add(stub, "New", assignee="alice")
    (event,) = await replay_all(stub, 1)
    assert event.event_type == CREATED
    assert event.task == task
    await assert_no_events_after(stub, 1)


async def test_update_emits_updated_naming_the_changed_fields(stub):
    task = await add(stub)
    updated = await update(stub, task.id, title="Renamed", due_date="2025-05-05")
    events = await replay_all(stub, 2)
    assert kinds(events) == ["TASK_EVENT_TYPE_CREATED", "TASK_EVENT_TYPE_UPDATED"]
    assert events[1].task == updated
    assert events[1].metadata["changed_fields"] == "title,due_date"
    await assert_no_events_after(stub, 2)


async def test_status_change_emits_updated_then_status_changed_with_previous_status(stub):
    task = await add(stub)
    await update(stub, task.id, status=IN_PROGRESS)
    events = (await replay_all(stub, 3))[1:]
    assert kinds(events) == ["TASK_EVENT_TYPE_UPDATED", "TASK_EVENT_TYPE_STATUS_CHANGED"]
    assert events[0].metadata["changed_fields"] == "status"
    assert events[1].metadata["previous_status"] == "TASK_STATUS_TODO"
    assert events[1].task.status == IN_PROGRESS
    await assert_no_events_after(stub, 3)


async def test_assignee_change_emits_updated_then_assigned_with_previous_assignee(stub):
    task = await add(stub, assignee="alice")
    await update(stub, task.id, assignee="bob")
    events = (await replay_all(stub, 3))[1:]
    assert kinds(events) == ["TASK_EVENT_TYPE_UPDATED", "TASK_EVENT_TYPE_ASSIGNED"]
    assert events[0].metadata["changed_fields"] == "assignee"
    assert events[1].metadata["previous_assignee"] == "alice"
    assert events[1].task.assignee == "bob"
    await assert_no_events_after(stub, 3)


async def test_first_assignment_reports_an_empty_previous_assignee(stub):
    task = await add(stub)
    await update(stub, task.id, assignee="alice")
    assigned = (await replay_all(stub, 3))[2]
    assert assigned.event_type == ASSIGNED
    assert assigned.metadata["previous_assignee"] == ""


async def test_unassigning_emits_assigned_with_the_previous_assignee_and_no_assignee(stub):
    task = await add(stub, assignee="alice")
    await update(stub, task.id, assignee="")
    assigned = (await replay_all(stub, 3))[2]
    assert assigned.event_type == ASSIGNED
    assert assigned.metadata["previous_assignee"] == "alice"
    assert not assigned.task.HasField("assignee")


async def test_update_of_status_and_assignee_emits_three_events_in_order_with_consecutive_sequences(
    stub,
):
    task = await add(stub)
    updated = await update(stub, task.id, status=IN_PROGRESS, assignee="alice")
    events = (await replay_all(stub, 4))[1:]
    assert kinds(events) == [
        "TASK_EVENT_TYPE_UPDATED",
        "TASK_EVENT_TYPE_STATUS_CHANGED",
        "TASK_EVENT_TYPE_ASSIGNED",
    ]
    assert sequences(events) == [2, 3, 4]
    assert events[0].metadata["changed_fields"] == "status,assignee"
    assert all(e.task == updated for e in events), "each event carries the task after the change"
    await assert_no_events_after(stub, 4)


async def test_title_and_due_date_changes_emit_only_updated(stub):
    task = await add(stub)
    await update(stub, task.id, title="New title")
    await update(stub, task.id, due_date="2030-01-01")
    events = await replay_all(stub, 3)
    assert kinds(events)[1:] == ["TASK_EVENT_TYPE_UPDATED", "TASK_EVENT_TYPE_UPDATED"]
    await assert_no_events_after(stub, 3)


async def test_update_that_changes_nothing_emits_nothing(stub):
    task = await add(stub, "Same", assignee="alice")
    await update(stub, task.id, title="Same", status=TODO, assignee="alice")
    await update(stub, task.id)
    await assert_no_events_after(stub, 1)


async def test_stale_expected_version_emits_nothing(stub):
    task = await add(stub)
    await update(stub, task.id, status=IN_PROGRESS)
    try:
        await update(stub, task.id, assignee="bob", expected_version=1)
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.ABORTED
    await assert_no_events_after(stub, 3)


async def test_delete_emits_deleted_with_previous_status_and_the_archived_task(stub):
    task = await add(stub)
    await update(stub, task.id, status=IN_PROGRESS)
    await stub.DeleteTask(pb.DeleteTaskRequest(task_id=task.id))
    deleted = (await replay_all(stub, 4))[3]
    assert deleted.event_type == DELETED
    assert deleted.metadata["previous_status"] == "TASK_STATUS_IN_PROGRESS"
    assert deleted.task.status == pb.TASK_STATUS_ARCHIVED
    assert deleted.task.version == 3
    await assert_no_events_after(stub, 4)


async def test_deleting_an_archived_task_emits_nothing(stub):
    task = await add(stub)
    await stub.DeleteTask(pb.DeleteTaskRequest(task_id=task.id))
    await stub.DeleteTask(pb.DeleteTaskRequest(task_id=task.id))
    await assert_no_events_after(stub, 2)


async def test_adding_a_subtask_emits_only_the_childs_created_event(stub):
    parent = await add(stub, "parent")
    child = await add(stub, "child", parent_task_id=parent.id)
    events = await replay_all(stub, 2)
    assert events[1].event_type == CREATED
    assert events[1].task == child
    await assert_no_events_after(stub, 2)


async def test_an_update_event_carries_the_parents_subtask_ids(stub):
    parent = await add(stub, "parent")
    child = await add(stub, "child", parent_task_id=parent.id)
    await update(stub, parent.id, assignee="alice")
    updated = (await replay_all(stub, 3))[2]
    assert updated.task.id == parent.id
    assert list(updated.task.subtask_ids) == [child.id]


# --- event identity and order ---------------------------------------------------


async def test_sequences_start_at_1_and_increase_by_one(stub):
    task = await add(stub)
    await update(stub, task.id, status=IN_PROGRESS, assignee="alice")
    await stub.DeleteTask(pb.DeleteTaskRequest(task_id=task.id))
    await add(stub)
    assert sequences(await replay_all(stub, 6)) == [1, 2, 3, 4, 5, 6]


async def test_each_event_has_a_unique_uuid_event_id_and_an_rfc3339_timestamp(stub):
    task = await add(stub)
    await update(stub, task.id, status=IN_PROGRESS, assignee="alice")
    events = await replay_all(stub, 4)
    ids = [e.event_id for e in events]
    assert len(set(ids)) == 4
    for event in events:
        uuid.UUID(event.event_id)
        assert is_rfc3339_utc(event.timestamp), event.timestamp


async def test_several_subscribers_see_identical_sequences(stub):
    calls = [subscribe(stub, after=0) for _ in range(3)]
    task = await add(stub)
    await update(stub, task.id, status=IN_PROGRESS, assignee="alice")
    await stub.DeleteTask(pb.DeleteTaskRequest(task_id=task.id))
    seen = await asyncio.gather(*(read_events(call, 5) for call in calls))
    for call in calls:
        call.cancel()
    as_bytes = [[e.SerializeToString(deterministic=True) for e in events] for events in seen]
    assert as_bytes[0] == as_bytes[1] == as_bytes[2]
    assert sequences(seen[0]) == [1, 2, 3, 4, 5]


async def test_concurrent_writers_every_subscriber_sees_every_event_once_in_sequence_order(
    stub,
):
    calls = [subscribe(stub, after=0) for _ in range(3)]

    async def writer(name: str) -> None:
        for i in range(25):
            await add(stub, f"{name} {i}")

    await asyncio.gather(*(writer(f"writer {w}") for w in range(4)))
    seen = await asyncio.gather(*(read_events(call, 100) for call in calls))
    for call in calls:
        call.cancel()
    for events in seen:
        assert sequences(events) == list(range(1, 101))
        assert len({e.task.id for e in events}) == 100
    assert [e.event_id for e in seen[0]] == [e.event_id for e in seen[1]]
    await assert_no_events_after(stub, 100)


async def test_concurrent_updates_to_one_task_are_each_seen_once_in_version_order(stub):
    task = await add(stub)
    call = subscribe(stub, after=1, event_types=[UPDATED])
    await asyncio.gather(*(update(stub, task.id, title=f"title {i}") for i in range(20)))
    events = await read_events(call, 20)
    call.cancel()
    assert [e.task.version for e in events] == list(range(2, 22))
    assert sequences(events) == list(range(2, 22))


# --- live subscriptions ---------------------------------------------------------


async def test_a_subscription_without_after_sequence_receives_only_live_events(stub):
    before = await add(stub, "before")
    call = await subscribe_live(stub)
    after = await add(stub, "after")
    (event,) = await read_events(call, 1)
    call.cancel()
    assert event.task.id == after.id
    assert event.task.id != before.id


async def test_live_events_arrive_in_commit_order_with_consecutive_sequences(stub):
    call = await subscribe_live(stub)
    task = await add(stub)
    await update(stub, task.id, status=IN_PROGRESS, assignee="alice")
    events = await read_events(call, 4)
    call.cancel()
    assert kinds(events) == [
        "TASK_EVENT_TYPE_CREATED",
        "TASK_EVENT_TYPE_UPDATED",
        "TASK_EVENT_TYPE_STATUS_CHANGED",
        "TASK_EVENT_TYPE_ASSIGNED",
    ]
    first = events[0].sequence
    assert sequences(events) == [first, first + 1, first + 2, first + 3]


async def test_live_subscription_applies_both_filters(stub):
    call = await subscribe_live(stub, event_types=[CREATED, DELETED], assignee="bob")
    await add(stub, "alice's", assignee="alice")
    bobs = await add(stub, "bob's", assignee="bob")
    await update(stub, bobs.id, status=IN_PROGRESS)
    await stub.DeleteTask(pb.DeleteTaskRequest(task_id=bobs.id))
    last = await marker(stub, assignee="bob")
    events = await read_until(call, lambda e: e.task.id == last.id)
    call.cancel()
    assert [(e.event_type, e.task.id) for e in events] == [
        (CREATED, bobs.id),
        (DELETED, bobs.id),
        (CREATED, last.id),
    ]


# --- filters --------------------------------------------------------------------


async def test_empty_event_types_receives_every_type(stub):
    task = await add(stub)
    await update(stub, task.id, status=IN_PROGRESS, assignee="alice")
    await stub.DeleteTask(pb.DeleteTaskRequest(task_id=task.id))
    call = subscribe(stub, after=0, event_types=[])
    events = await read_events(call, 5)
    call.cancel()
    assert set(kinds(events)) == {
        "TASK_EVENT_TYPE_CREATED",
        "TASK_EVENT_TYPE_UPDATED",
        "TASK_EVENT_TYPE_STATUS_CHANGED",
        "TASK_EVENT_TYPE_ASSIGNED",
        "TASK_EVENT_TYPE_DELETED",
    }


async def test_event_types_filter_delivers_only_the_listed_types(stub):
    call = subscribe(stub, after=0, event_types=[STATUS_CHANGED, DELETED])
    task = await add(stub)
    await update(stub, task.id, status=IN_PROGRESS, assignee="alice")
    await stub.DeleteTask(pb.DeleteTaskRequest(task_id=task.id))
    events = await read_events(call, 2)
    last = await add(stub)
    await stub.DeleteTask(pb.DeleteTaskRequest(task_id=last.id))
    (next_event,) = await read_events(call, 1)
    call.cancel()
    assert [(e.event_type, e.sequence) for e in events] == [(STATUS_CHANGED, 3), (DELETED, 5)]
    assert (next_event.event_type, next_event.task.id) == (DELETED, last.id)


async def test_unspecified_in_event_types_matches_nothing(stub):
    call = subscribe(stub, after=0, event_types=[pb.TASK_EVENT_TYPE_UNSPECIFIED, DELETED])
    task = await add(stub)
    await update(stub, task.id, status=IN_PROGRESS)
    await stub.DeleteTask(pb.DeleteTaskRequest(task_id=task.id))
    (event,) = await read_events(call, 1)
    call.cancel()
    assert (event.event_type, event.sequence) == (DELETED, 4)


async def test_assignee_filter_matches_the_assignee_after_the_change(stub):
    alice = subscribe(stub, after=0, assignee="alice")
    bob = subscribe(stub, after=0, assignee="bob")
    task = await add(stub, assignee="alice")
    await update(stub, task.id, assignee="bob")
    end = await marker(stub, assignee="alice")
    end_bob = await marker(stub, assignee="bob")
    alice_events = await read_until(alice, lambda e: e.task.id == end.id)
    bob_events = await read_until(bob, lambda e: e.task.id == end_bob.id)
    alice.cancel()
    bob.cancel()
    assert [(e.event_type, e.task.id) for e in alice_events] == [
        (CREATED, task.id),
        (CREATED, end.id),
    ]
    assert [(e.event_type, e.task.id) for e in bob_events] == [
        (UPDATED, task.id),
        (ASSIGNED, task.id),
        (CREATED, end_bob.id),
    ]
    assert bob_events[1].metadata["previous_assignee"] == "alice"


async def test_assignee_filter_does_not_match_the_unassigning_events(stub):
    call = subscribe(stub, after=0, assignee="alice")
    task = await add(stub, assignee="alice")
    await update(stub, task.id, assignee="")
    end = await marker(stub, assignee="alice")
    events = await read_until(call, lambda e: e.task.id == end.id)
    call.cancel()
    assert [e.sequence for e in events] == [1, 4]


async def test_event_type_and_assignee_filters_apply_together(stub):
    call = subscribe(stub, after=0, event_types=[STATUS_CHANGED], assignee="alice")
    alices = await add(stub, assignee="alice")
    bobs = await add(stub, assignee="bob")
    await update(stub, bobs.id, status=IN_PROGRESS)
    await update(stub, alices.id, title="renamed")
    await update(stub, alices.id, status=IN_PROGRESS)
    (event,) = await read_events(call, 1)
    call.cancel()
    assert (event.event_type, event.task.id) == (STATUS_CHANGED, alices.id)
    assert event.sequence == 7


# --- TaskEventStream (two-way) --------------------------------------------------


def subscribe_message(**fields) -> pb.TaskEventStreamRequest:
    return pb.TaskEventStreamRequest(subscribe=pb.SubscribeToTaskEventsRequest(**fields))


def update_message(task_id, **fields) -> pb.TaskEventStreamRequest:
    return pb.TaskEventStreamRequest(update=pb.TaskUpdate(task_id=task_id, **fields))


async def test_task_event_stream_first_message_must_be_subscribe(stub):
    task = await add(stub)
    call = stub.TaskEventStream()
    await call.write(update_message(task.id, status=IN_PROGRESS))
    events, error = await read_to_error(call, ERROR_WAIT)
    assert events == []
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "subscribe" in error.details()
    await assert_no_events_after(stub, 1)


async def test_task_event_stream_updates_apply_and_their_events_arrive_on_the_same_stream(
    stub,
):
    task = await add(stub)
    call = stub.TaskEventStream()
    await call.write(subscribe_message())
    await call.write(update_message(task.id, status=IN_PROGRESS, assignee="alice"))
    events = await read_events(call, 3)
    await call.done_writing()
    call.cancel()
    assert kinds(events) == [
        "TASK_EVENT_TYPE_UPDATED",
        "TASK_EVENT_TYPE_STATUS_CHANGED",
        "TASK_EVENT_TYPE_ASSIGNED",
    ]
    assert sequences(events) == [2, 3, 4]
    stored = (await stub.GetTask(pb.GetTaskRequest(task_id=task.id))).task
    assert (stored.status, stored.assignee, stored.version) == (IN_PROGRESS, "alice", 2)
    assert events[-1].task == stored


async def test_task_event_stream_update_with_empty_assignee_unassigns(stub):
    task = await add(stub, assignee="alice")
    call = stub.TaskEventStream()
    await call.write(subscribe_message(event_types=[ASSIGNED]))
    await call.write(update_message(task.id, assignee=""))
    (event,) = await read_events(call, 1)
    call.cancel()
    assert event.metadata["previous_assignee"] == "alice"
    assert not event.task.HasField("assignee")


async def test_task_event_stream_filters_apply_to_its_own_updates(stub):
    task = await add(stub)
    call = stub.TaskEventStream()
    await call.write(subscribe_message(event_types=[STATUS_CHANGED]))
    await call.write(update_message(task.id, assignee="alice"))
    await call.write(update_message(task.id, status=IN_PROGRESS))
    (event,) = await read_events(call, 1)
    call.cancel()
    assert (event.event_type, event.sequence) == (STATUS_CHANGED, 5)


async def test_task_event_stream_carries_other_clients_events(stub):
    call = stub.TaskEventStream()
    await call.write(subscribe_message(after_sequence=0))
    task = await add(stub, "from elsewhere")
    (event,) = await read_events(call, 1)
    call.cancel()
    assert (event.event_type, event.task.id) == (CREATED, task.id)


async def test_task_event_stream_a_second_subscribe_is_invalid_argument(stub):
    task = await add(stub)
    call = stub.TaskEventStream()
    await call.write(subscribe_message(after_sequence=0))
    await call.write(subscribe_message())
    events, error = await read_to_error(call, ERROR_WAIT)
    assert [e.task.id for e in events] in ([], [task.id])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "subscribe" in error.details()


async def test_task_event_stream_update_for_an_unknown_task_ends_the_stream_with_not_found(stub):
    call = stub.TaskEventStream()
    await call.write(subscribe_message())
    await call.write(update_message("00000000-0000-0000-0000-000000000000", status=IN_PROGRESS))
    events, error = await read_to_error(call, ERROR_WAIT)
    assert events == []
    assert error.code() == grpc.StatusCode.NOT_FOUND
    await assert_no_events_after(stub, 0)


async def test_task_event_stream_invalid_update_ends_the_stream_and_changes_nothing(stub):
    task = await add(stub)
    call = stub.TaskEventStream()
    await call.write(subscribe_message())
    await call.write(update_message(task.id, status=42))
    events, error = await read_to_error(call, ERROR_WAIT)
    assert events == []
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "status" in error.details()
    assert (await stub.GetTask(pb.GetTaskRequest(task_id=task.id))).task == task
    await assert_no_events_after(stub, 1)


async def test_task_event_stream_with_unknown_event_type_is_invalid_argument(stub):
    call = stub.TaskEventStream()
    await call.write(subscribe_message(event_types=[99]))
    events, error = await read_to_error(call, ERROR_WAIT)
    assert (events, error.code()) == ([], grpc.StatusCode.INVALID_ARGUMENT)
    assert "event_types" in error.details()


async def test_task_event_stream_reports_a_failed_update_that_arrives_while_events_are_sent(
    server, stub
):
    # 120 events of ~1 kB overflow a 16 kB receive window: once the first has
    # arrived, the server is busy sending the rest when the bad update comes in.
    await asyncio.gather(*(add(stub, f"{i} " + "x" * 1000) for i in range(120)))
    options = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16384)]
    async with grpc.aio.insecure_channel(server.address, options=options) as channel:
        call = rigger_pb2_grpc.RiggerServiceStub(channel).TaskEventStream()
        await call.write(subscribe_message(after_sequence=0))
        first = await read_events(call, 1)
        await call.write(update_message("00000000-0000-0000-0000-000000000000", status=IN_PROGRESS))
        await asyncio.sleep(0.3)  # let the server reject the update while it is sending
        events, error = await read_to_error(call, ERROR_WAIT)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert sequences(first + events) == list(range(1, len(events) + 2))
