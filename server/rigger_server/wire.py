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
