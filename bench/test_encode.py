"""Event encoding: rigger_server.wire.encode_event, once per event whatever the subscribers.

Run with `pytest bench/test_encode.py`.
"""

from __future__ import annotations

import pytest
from rigger_server import wire

from bench import samples


@pytest.mark.parametrize("payload_bytes", [250, 2000])
def test_encode_event(benchmark, payload_bytes: int) -> None:
    draft = samples.draft(samples.task(payload_bytes))
    encoded = benchmark.pedantic(
        wire.encode_event, args=(draft, 1), iterations=1000, rounds=30, warmup_rounds=1
    )
    # Guards the sample, not the speed: the payload really is about the size named.
    assert abs(len(encoded) - payload_bytes) < 0.2 * payload_bytes
