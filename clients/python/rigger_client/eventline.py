"""The one-line text form of a TaskEvent that every Rigger sidecar prints.

    #<sequence> <TYPE> task=<id> title=<quoted> status=<STATUS> assignee=<quoted or ->

The rules are in clients/README.md ("The event line"); the Go and TypeScript
clients print exactly the same bytes, which clients/testdata/event-lines.txt
holds for each client's tests to compare with.
"""

from __future__ import annotations

from google.protobuf.descriptor import EnumDescriptor
from rigger.v1 import rigger_pb2 as pb

EVENT_TYPE_PREFIX = "TASK_EVENT_TYPE_"
STATUS_PREFIX = "TASK_STATUS_"

# What a quoted field escapes, beyond JSON's quote and backslash: every
# control character, so a field never ends the line or drives a terminal, and
# the characters that break or reorder a line where it is displayed (the line
# and paragraph separators, the bidirectional controls), so a title cannot
# make the fields after it look like something else.
_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_ESCAPED = [
    *range(0x00, 0x20),
    *range(0x7F, 0xA0),
    0x061C,
    0x200E,
    0x200F,
    0x2028,
    0x2029,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
]
_QUOTING = str.maketrans(
    {chr(c): f"\\u{c:04x}" for c in _ESCAPED} | {ord(k): v for k, v in _SHORT.items()}
)
# A task id is printed bare when it is one plain token, as every id the
# Rigger server makes is: printable ASCII with no space, quote or backslash.
_BARE_ID = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "\\"}


def format_event(event: pb.TaskEvent) -> str:
    """The event as one line, without the newline."""
    task = event.task
    kind = event_type_label(event.event_type)
    status = enum_label(pb.TaskStatus.DESCRIPTOR, task.status, STATUS_PREFIX)
    assignee = quote(task.assignee) if task.HasField("assignee") else "-"
    return (
        f"#{event.sequence} {kind} task={task_id(task.id)} title={quote(task.title)}"
        f" status={status} assignee={assignee}"
    )


def task_id(text: str) -> str:
    """A task id as printed: bare when it is a plain token, `-` when empty, else quoted."""
    if not text:
        return "-"
    if text != "-" and _BARE_ID.issuperset(text):
        return text
    return quote(text)


def quote(text: str) -> str:
    """`text` as a JSON string that stays on one line and displays as what it holds."""
    return '"' + text.translate(_QUOTING) + '"'


def event_type_label(number: int) -> str:
    """A TaskEventType as printed: `STATUS_CHANGED`, or the number if unknown."""
    return enum_label(pb.TaskEventType.DESCRIPTOR, number, EVENT_TYPE_PREFIX)


def enum_label(enum: EnumDescriptor, number: int, prefix: str) -> str:
    """The value's name without `prefix`; a number this build does not know, as digits."""
    value = enum.values_by_number.get(number)
    return str(number) if value is None else value.name.removeprefix(prefix)
