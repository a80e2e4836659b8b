"""Batches are capped by bytes: how events are grouped into messages (wire.encode_batches)."""

from __future__ import annotations

from rigger_server.limits import MAX_BATCH_MESSAGE_BYTES, MIB
from rigger_server.wire import encode_batches


def payloads(*sizes: int) -> list[bytes]:
    return [bytes([i % 251]) * size for i, size in enumerate(sizes)]


def test_the_cap_is_well_under_the_default_receive_limit():
    assert MAX_BATCH_MESSAGE_BYTES <= 4 * MIB // 2


def test_small_events_share_a_message():
    messages = list(encode_batches(payloads(10, 10, 10), 1000))
    assert [count for _, count in messages] == [3]


def test_events_over_the_cap_together_are_split_in_order():
    events = payloads(400, 400, 400, 400, 400)
    messages = list(encode_batches(events, 1000))
    assert [count for _, count in messages] == [2, 2, 1]
    assert all(len(message) <= 1000 for message, _ in messages)
    assert b"".join(message for message, _ in messages) == b"".join(
        message for message, _ in encode_batches(events, 10_000)
    )


def test_an_event_larger_than_the_cap_goes_alone():
    messages = list(encode_batches(payloads(10, 5000, 10), 1000))
    assert [count for _, count in messages] == [1, 1, 1]
    assert len(messages[1][0]) > 1000
