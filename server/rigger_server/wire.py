"""Translation between rigger.v1 protobuf messages and domain objects."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from typing import Any

from google.protobuf.wrappers_pb2 import BytesValue
from rigger.v1 import rigger_pb2 as pb

from rigger_server.domain import (
    ComprehensionTestRecord,
    EnhancementRecord,
    EventDraft,
    Prd,
    Task,
)

# Task and the wire Task share field names; None marks an absent optional.
_TASK_FIELDS = tuple(field.name for field in dataclasses.fields(Task))


def task_to_pb(task: Task) -> pb.Task:
    """Build the wire Task; absent optionals stay unset."""
    values: dict[str, Any] = {}
    for name in _TASK_FIELDS:
        value = getattr(task, name)
        if value is None:
            continue
        values[name] = int(value) if isinstance(value, enum.IntEnum) else value
    return pb.Task(**values)


def encode_event(draft: EventDraft, sequence: int) -> bytes:
    """Serialize an event at its place in the log: once, for every subscriber and replay."""
    message = pb.TaskEvent(
        event_id=draft.event_id,
        timestamp=draft.timestamp,
        event_type=int(draft.event_type),  # type: ignore[arg-type]
        task=task_to_pb(draft.task),
        metadata=draft.metadata,
        sequence=sequence,
    )
    if draft.actor is not None:
        message.actor = draft.actor
    return message.SerializeToString(deterministic=True)


def prd_to_pb(prd: Prd) -> pb.ParsePRDResponse:
    """Build the ParsePRD response."""
    return pb.ParsePRDResponse(
        prd_id=prd.id,
        prd_title=prd.title,
        objectives=prd.objectives,
        tech_stack=prd.tech_stack,
        constraints=prd.constraints,
    )


def enhancement_to_pb(enhancement: EnhancementRecord) -> pb.Enhancement:
    """Build the wire Enhancement."""
    return pb.Enhancement(
        enhancement_id=enhancement.id,
        task_id=enhancement.task_id,
        timestamp=enhancement.timestamp,
        enhancement_type=enhancement.enhancement_type,
        content=enhancement.content,
        planner=enhancement.planner,
        model=enhancement.model,
    )


def test_to_pb(test: ComprehensionTestRecord) -> pb.ComprehensionTest:
    """Build the wire ComprehensionTest."""
    return pb.ComprehensionTest(
        test_id=test.id,
        task_id=test.task_id,
        timestamp=test.timestamp,
        test_type=test.test_type,
        question=test.question,
        options=test.options,
        correct_answer=test.correct_answer,
        planner=test.planner,
        model=test.model,
    )


def encode_batch(payloads: Iterable[bytes]) -> bytes:
    """One SubscribeToTaskEventBatchesResponse, built from the pre-encoded events.

    A repeated message field is each element's tag, length and bytes in turn,
    so concatenating them is the message's encoding, with no re-serialization.
    `events` is field 1, length-delimited: exactly how BytesValue encodes its
    `value` (field 1, bytes), so protobuf itself writes each element's tag and
    length.
    """
    return b"".join(BytesValue(value=payload).SerializeToString() for payload in payloads)
