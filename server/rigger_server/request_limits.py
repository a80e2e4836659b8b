"""How long every string, and how many entries every repeated field, of a request may hold.

One table, keyed by the field's full name in the rigger.v1 contract, names
the `Limits` setting that bounds it: characters for a string, entries for a
repeated field. This is the one place request lengths are checked: the
servicer checks every request against it before the domain sees it (the
domain, tasks.py, checks only what a value means), so a method implemented
later is covered by parsing its request the same way.
tests/test_request_limits.py walks the contract's descriptor: a string or
repeated field added without an entry here fails it, and so does an entry
whose limit is not the one the docs and `rig grpc --help` promise.
"""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from rigger_server.errors import InvalidArgument
from rigger_server.limits import Limits

_TITLE = "max_title_chars"
_FIELD = "max_field_chars"
_EVENT_TYPES = "max_event_types"

FIELD_LIMITS: dict[str, str] = {
    "rigger.v1.ListTasksRequest.assignee": _FIELD,
    "rigger.v1.AddTaskRequest.title": _TITLE,
    "rigger.v1.AddTaskRequest.assignee": _FIELD,
    "rigger.v1.AddTaskRequest.due_date": _FIELD,
    "rigger.v1.AddTaskRequest.source_prd_id": _FIELD,
    "rigger.v1.AddTaskRequest.parent_task_id": _FIELD,
    "rigger.v1.UpdateTaskRequest.task_id": _FIELD,
    "rigger.v1.UpdateTaskRequest.assignee": _FIELD,
    "rigger.v1.UpdateTaskRequest.due_date": _FIELD,
    "rigger.v1.UpdateTaskRequest.title": _TITLE,
    "rigger.v1.GetTaskRequest.task_id": _FIELD,
    "rigger.v1.DeleteTaskRequest.task_id": _FIELD,
    "rigger.v1.ParsePRDRequest.prd_file_path": _FIELD,
    "rigger.v1.GenerateTasksFromPRDRequest.prd_id": _FIELD,
    "rigger.v1.GenerateTasksFromPRDRequest.model": _FIELD,
    "rigger.v1.OrchestrateTaskRequest.task_id": _FIELD,
    "rigger.v1.OrchestrateTaskRequest.model": _FIELD,
    "rigger.v1.OrchestrateTaskRequest.test_type": _FIELD,
    "rigger.v1.SubscribeToTaskEventsRequest.event_types": _EVENT_TYPES,
    "rigger.v1.SubscribeToTaskEventsRequest.assignee_filter": _FIELD,
    "rigger.v1.SubscribeToTaskEventBatchesRequest.event_types": _EVENT_TYPES,
    "rigger.v1.SubscribeToTaskEventBatchesRequest.assignee_filter": _FIELD,
    "rigger.v1.TaskUpdate.task_id": _FIELD,
    "rigger.v1.TaskUpdate.assignee": _FIELD,
}


def needs_limit(field: FieldDescriptor) -> bool:
    """True for the fields a client can make arbitrarily large: strings, bytes, repeated."""
    return field.is_repeated or field.type in (
        FieldDescriptor.TYPE_STRING,
        FieldDescriptor.TYPE_BYTES,
    )


def check_request(message: Message, limits: Limits, prefix: str = "") -> None:
    """Raise InvalidArgument naming the first field of `message` that is over its limit.

    Only fields that are set are looked at; set message fields are checked
    in turn, their fields named `outer.inner`.
    """
    for field, value in message.ListFields():
        name = f"{prefix}{field.name}"
        repeated = field.is_repeated
        if field.type == FieldDescriptor.TYPE_MESSAGE and not repeated:
            check_request(value, limits, f"{name}.")
            continue
        if not needs_limit(field):
            continue
        # A field missing from the table (the test forbids it) still gets the
        # strictest general bound rather than none.
        limit = getattr(limits, FIELD_LIMITS.get(field.full_name, _FIELD))
        if len(value) > limit:
            size = f"has {len(value)} entries" if repeated else f"is {len(value)} characters long"
            raise InvalidArgument(name, f"{size}; the limit is {limit}")
