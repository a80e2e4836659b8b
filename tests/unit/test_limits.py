"""The server's limits: their defaults."""

from __future__ import annotations

from rigger_server.limits import Limits


def test_defaults_are_generous_but_bounded():
    limits = Limits()
    assert limits.max_message_bytes == 4 * 1024 * 1024
    assert limits.max_title_chars >= 100 * 1024  # a 100 kB title is legal
    assert limits.max_subscribers == 10_000
    assert limits.max_prd_bytes == 1024 * 1024
    assert limits.buffer_bytes == 64 * 1024 * 1024
