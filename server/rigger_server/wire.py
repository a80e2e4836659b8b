"""Translation between rigger.v1 protobuf messages and domain objects."""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Iterable, Iterator, Sequence
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
# Fields the server keeps for itself (Task.prd_item) have no wire field.
_TASK_FIELDS = tuple(
    field.name
    for field in dataclasses.fields(Task)
    if field.name in pb.Task.DESCRIPTOR.fields_by_name
)


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
    """
    parts = []
    for payload in payloads:
        parts.append(_element_prefix(len(payload)))
        parts.append(payload)
    return b"".join(parts)


@functools.lru_cache(maxsize=4096)
def _element_prefix(length: int) -> bytes:
    # `events` is field 1, length-delimited: exactly how BytesValue encodes its
    # `value` (field 1, bytes), so protobuf itself writes the tag and length.
    # Events of one size share their prefix, made once per length.
    if length == 0:
        return b"\n\0"  # BytesValue leaves an empty value out altogether
    return BytesValue(value=bytes(length)).SerializeToString()[:-length]


def encode_batches(payloads: Sequence[bytes], max_bytes: int) -> Iterator[tuple[bytes, int]]:
    """SubscribeToTaskEventBatchesResponses of at most `max_bytes` each, with their event counts.

    Events stay in order and are packed greedily; an event that alone is
    larger than `max_bytes` goes in a message of its own.
    """
    start = 0
    while start < len(payloads):
        end, size = start + 1, _framed_size(payloads[start])
        while end < len(payloads) and size + _framed_size(payloads[end]) <= max_bytes:
            size += _framed_size(payloads[end])
            end += 1
        yield encode_batch(payloads[start:end]), end - start
        start = end


def _framed_size(payload: bytes) -> int:
    return len(_element_prefix(len(payload))) + len(payload)
