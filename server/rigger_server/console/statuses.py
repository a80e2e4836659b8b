"""Task statuses as people type them: `todo`, `in-progress`, `TASK_STATUS_TODO` or `1`."""

from __future__ import annotations

import argparse
from typing import Literal

from rigger.v1 import rigger_pb2 as pb
from rigger_client.eventline import STATUS_PREFIX, enum_label

# The statuses a client may set or filter by, as `rig mcp` offers them to a
# model (a typed input lists its values). tests/test_task_cli.py checks this
# against the contract's TaskStatus, so it cannot fall behind it.
StatusName = Literal[
    "TODO",
    "IN_PROGRESS",
    "PENDING_ENHANCEMENT",
    "PENDING_COMPREHENSION_TEST",
    "PENDING_FOLLOW_ON",
    "PENDING_DECOMPOSITION",
    "DECOMPOSED",
    "ORCHESTRATION_COMPLETE",
    "COMPLETED",
    "ARCHIVED",
]


def names() -> list[str]:
    """The short names of every status but UNSPECIFIED, in the contract's order."""
    return [
        value.name.removeprefix(STATUS_PREFIX)
        for value in pb.TaskStatus.DESCRIPTOR.values
        if value.number != pb.TASK_STATUS_UNSPECIFIED
    ]


def label(number: int) -> str:
    """A status as the table prints it: `IN_PROGRESS`, or the number if unknown."""
    return enum_label(pb.TaskStatus.DESCRIPTOR, number, STATUS_PREFIX)


def parse(text: str) -> pb.TaskStatus.ValueType:
    """The status `text` names, in any case, with `-` or `_`, with or without the prefix."""
    value = text.strip()
    if value.isascii() and value.isdigit():
        number = int(value)
        if pb.TaskStatus.DESCRIPTOR.values_by_number.get(number) is not None:
            return pb.TaskStatus.ValueType(number)
    name = value.upper().replace("-", "_")
    name = name if name.startswith(STATUS_PREFIX) else STATUS_PREFIX + name
    try:
        status = pb.TaskStatus.Value(name)
    except ValueError:
        status = pb.TASK_STATUS_UNSPECIFIED
    if status == pb.TASK_STATUS_UNSPECIFIED:
        raise argparse.ArgumentTypeError(
            f"unknown status {text!r}; expected one of {', '.join(n.lower() for n in names())}"
        )
    return status
