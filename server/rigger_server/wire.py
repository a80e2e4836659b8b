"""Translation between rigger.v1 protobuf messages and domain objects."""

from __future__ import annotations

from rigger.v1 import rigger_pb2 as pb

from rigger_server.domain import Event, Prd, Task


def task_to_pb(task: Task) -> pb.Task:
    """Build the wire Task; absent optionals stay unset."""
    message = pb.Task(
        id=task.id,
        title=task.title,
        status=int(task.status),  # type: ignore[arg-type]
        subtask_ids=task.subtask_ids,
        created_at=task.created_at,
        updated_at=task.updated_at,
        context_files=task.context_files,
        dependencies=task.dependencies,
        version=task.version,
    )
    for name in (
        "assignee",
        "due_date",
        "source_transcript_id",
        "source_prd_id",
        "parent_task_id",
        "complexity",
        "reasoning",
    ):
        value = getattr(task, name)
        if value is not None:
            setattr(message, name, value)
    return message


def event_to_pb(event: Event) -> pb.TaskEvent:
    """Build the wire TaskEvent."""
    message = pb.TaskEvent(
        event_id=event.event_id,
        timestamp=event.timestamp,
        event_type=int(event.event_type),  # type: ignore[arg-type]
        task=task_to_pb(event.task),
        metadata=event.metadata,
        sequence=event.sequence,
    )
    if event.actor is not None:
        message.actor = event.actor
    return message


def encode_event(event: Event) -> bytes:
    """Serialize an event once, for every subscriber that receives it."""
    return event_to_pb(event).SerializeToString(deterministic=True)


def prd_to_pb(prd: Prd) -> pb.ParsePRDResponse:
    """Build the ParsePRD response."""
    return pb.ParsePRDResponse(
        prd_id=prd.id,
        prd_title=prd.title,
        objectives=prd.objectives,
        tech_stack=prd.tech_stack,
        constraints=prd.constraints,
    )


# SubscribeToTaskEventBatchesResponse.events: field 1, length-delimited.
_EVENTS_TAG = b"\x0a"


def varint(value: int) -> bytes:
    """A non-negative integer as a protobuf base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_batch(batch: list[tuple[Event, bytes]]) -> bytes:
    """One SubscribeToTaskEventBatchesResponse, built from the pre-encoded events.

    A repeated message field is each element's tag, length and bytes in turn,
    so concatenating them is the message's encoding, with no re-serialization.
    """
    return b"".join(
        part for _, encoded in batch for part in (_EVENTS_TAG, varint(len(encoded)), encoded)
    )
