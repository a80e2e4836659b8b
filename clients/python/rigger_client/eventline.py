"""The one-line text form of a TaskEvent that every Rigger sidecar prints.

    #<sequence> <TYPE> task=<id> title=<JSON string> status=<STATUS> assignee=<JSON string or ->

The Go and TypeScript sidecars print exactly the same bytes, so scripts can
consume any of them.
"""

from __future__ import annotations

import json

from google.protobuf.descriptor import EnumDescriptor
from rigger.v1 import rigger_pb2 as pb

EVENT_TYPE_PREFIX = "TASK_EVENT_TYPE_"
STATUS_PREFIX = "TASK_STATUS_"


def format_event(event: pb.TaskEvent) -> str:
    """The event as one line, without the newline."""
    task = event.task
    kind = event_type_label(event.event_type)
    status = enum_label(pb.TaskStatus.DESCRIPTOR, task.status, STATUS_PREFIX)
    assignee = _json(task.assignee) if task.HasField("assignee") else "-"
    return (
        f"#{event.sequence} {kind} task={task.id} title={_json(task.title)}"
        f" status={status} assignee={assignee}"
    )


def event_type_label(number: int) -> str:
    """A TaskEventType as printed: `STATUS_CHANGED`, or the number if unknown."""
    return enum_label(pb.TaskEventType.DESCRIPTOR, number, EVENT_TYPE_PREFIX)


def enum_label(enum: EnumDescriptor, number: int, prefix: str) -> str:
    """The value's name without `prefix`; a number this build does not know, as digits."""
    value = enum.values_by_number.get(number)
    return str(number) if value is None else value.name.removeprefix(prefix)


def _json(text: str) -> str:
    # ensure_ascii=False keeps non-ASCII readable; control characters,
    # newlines included, are still escaped, so the event stays on one line.
    return json.dumps(text, ensure_ascii=False)
