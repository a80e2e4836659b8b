"""How a run describes what it saw in its problems: events, stream ends, observations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rigger.conformance.v1 import harness_pb2 as hp
from rigger.v1 import rigger_pb2 as pb

from conformance import cases as c
from conformance.cases import messages
from conformance.runner import judge

CODE_NAMES = {number: name for name, number in c.CODES.items()}


def short(observation: hp.Observation) -> str:
    kind = observation.WhichOneof("result")
    if kind == "executor_error":
        return f"ExecutorError: {observation.executor_error.message}"
    return str(kind)


def summary(event: pb.TaskEvent) -> str:
    kind = messages.enum_name(pb.TaskEventType.DESCRIPTOR, event.event_type)
    kind = str(kind).removeprefix("TASK_EVENT_TYPE_")
    title = judge.show(event.task.title, 30)
    assignee = judge.show(event.task.assignee, 20) if event.task.HasField("assignee") else "-"
    return f"#{event.sequence} {kind} {title} assignee={assignee}"


def summaries(events: Sequence[pb.TaskEvent], limit: int = 8) -> str:
    shown = [summary(e) for e in events[:limit]]
    more = f" … and {len(events) - limit} more" if len(events) > limit else ""
    return "[" + "; ".join(shown) + more + "]"


def end_text(end: hp.StreamEnd | None) -> str:
    if end is None:
        return "no end"
    code = CODE_NAMES.get(end.status.code, str(end.status.code))
    return f"{code}: {judge.show(end.status.message)}"


def difference(
    left_name: str, left: list[dict[str, Any]], right_name: str, right: list[dict[str, Any]]
) -> str:
    for index, (a, b) in enumerate(zip(left, right, strict=False)):
        if a != b:
            return (
                f"{left_name} and {right_name} differ at event {index}: "
                f"{judge.show(a, 200)} vs {judge.show(b, 200)}"
            )
    return (
        f"{left_name} received {len(left)} events, {right_name} {len(right)}: "
        f"the shorter one is a prefix of the longer"
    )
