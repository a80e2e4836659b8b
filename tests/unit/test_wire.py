"""Domain objects to wire bytes: tasks, events and batches encoded once."""

from __future__ import annotations

from rigger.v1 import rigger_pb2 as pb
from rigger_server.wire import encode_batch, encode_event, task_to_pb

from unit.drafts import created, new_task


def test_absent_optional_task_fields_stay_absent_on_the_wire():
    message = task_to_pb(new_task("t"))
    for field in ("assignee", "due_date", "source_prd_id", "parent_task_id", "complexity"):
        assert not message.HasField(field), field


def test_an_event_is_encoded_at_its_place_in_the_log():
    task = new_task("t", assignee="alice")
    [draft] = created(task)
    message = pb.TaskEvent.FromString(encode_event(draft, 42))
    assert (message.sequence, message.event_id, message.task.assignee) == (
        42,
        draft.event_id,
        "alice",
    )
    assert not message.HasField("actor")


def test_a_batch_is_the_generated_message_encoding():
    events = [
        pb.TaskEvent(
            event_id=f"e{i}",
            event_type=pb.TASK_EVENT_TYPE_CREATED,
            task=pb.Task(id=f"t{i}", title="x" * size),
            sequence=i,
        )
        for i, size in enumerate([0, 1, 200, 20000], start=1)
    ]
    encoded = encode_batch(e.SerializeToString() for e in events)
    assert encoded == pb.SubscribeToTaskEventBatchesResponse(events=events).SerializeToString()
    assert list(pb.SubscribeToTaskEventBatchesResponse.FromString(encoded).events) == events
