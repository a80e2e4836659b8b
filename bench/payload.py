"""Stamped, padded task titles: how a write carries its send time to every subscriber.

The writer puts `time.monotonic_ns()` into the task title just before the call;
the title travels inside every TaskEvent, so a subscriber on the same host
reads the stamp back out of the raw bytes without decoding the message.
CLOCK_MONOTONIC is one clock for every process on a Linux host.
"""

from __future__ import annotations

MARK = b"~stamp:"
_MARK_TEXT = MARK.decode()
STAMP_DIGITS = 19  # enough for any monotonic_ns value; fixed width so parsing is a slice

# Encoded size of a TaskEvent whose title is empty, averaged over CREATED (178 B)
# and UPDATED (+25 B of changed_fields metadata), the two events the writers emit.
# Measured once with a real event; the ceiling server's events are ~the same size.
_EVENT_OVERHEAD = 190


def title(stamp_ns: int, payload_bytes: int) -> str:
    """A title holding `stamp_ns`, padded so the encoded event is about `payload_bytes`."""
    head = f"{_MARK_TEXT}{stamp_ns:0{STAMP_DIGITS}d} "
    pad = max(0, payload_bytes - _EVENT_OVERHEAD - len(head))
    return head + "x" * pad


def read_stamp(encoded_event: bytes) -> int:
    """The stamp in an encoded TaskEvent's task title; -1 when the event carries none."""
    at = encoded_event.find(MARK)
    if at < 0:
        return -1
    start = at + len(MARK)
    return int(encoded_event[start : start + STAMP_DIGITS])
