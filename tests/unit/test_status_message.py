"""Status messages cut to what every client accepts, in bytes of the grpc-message trailer."""

from __future__ import annotations

import urllib.parse

from rigger_server.errors import quoted
from rigger_server.limits import MAX_STATUS_MESSAGE_BYTES
from rigger_server.service import status_message


def trailer_bytes(text: str) -> int:
    """The size of `text` as gRPC percent-encodes it into grpc-message."""
    unreserved = "".join(chr(c) for c in range(0x20, 0x7F) if c != 0x25)
    return len(urllib.parse.quote(text, safe=unreserved))


def test_a_short_message_is_sent_as_it_is():
    assert status_message("task 'x' not found") == "task 'x' not found"


def test_a_long_message_is_cut_to_the_bound_counting_each_encoded_byte():
    text = "task '" + "\u00e9" * 4096 + "' not found"
    cut = status_message(text)
    assert cut.startswith("task '\u00e9") and cut.endswith("(cut)")
    assert MAX_STATUS_MESSAGE_BYTES - 6 <= trailer_bytes(cut) <= MAX_STATUS_MESSAGE_BYTES


def test_a_message_exactly_at_the_bound_is_not_cut():
    text = "%" * (MAX_STATUS_MESSAGE_BYTES // 3)
    assert status_message(text) == text


def test_half_a_surrogate_pair_is_replaced_so_the_status_can_be_sent():
    assert status_message("bad \ud800 value") == "bad ? value"


def test_a_quoted_value_is_a_prefix_with_its_length():
    assert quoted("abc") == "'abc'"
    assert quoted("x" * 1000) == "'" + "x" * 80 + "\u2026' (1000 characters)"
