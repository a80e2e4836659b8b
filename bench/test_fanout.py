"""Fanout of one event to N subscriber queues: rigger_server.events.Broadcaster.publish.

Run with `pytest bench/test_fanout.py`. Each round publishes one event (encoded
at commit) into N Subscriptions' bounded deques; nobody reads them, so the buffer is
set above the number of rounds and no subscription is ever cut off.
"""

from __future__ import annotations

import pytest
from rigger_server.events import Broadcaster, EventFilter

from bench import samples

ROUNDS = 500


@pytest.mark.parametrize("subscribers", [1, 10, 100, 1000])
@pytest.mark.parametrize("payload_bytes", [250, 2000])
def test_publish_one_event(benchmark, subscribers: int, payload_bytes: int) -> None:
    broadcaster = Broadcaster(buffer=ROUNDS * 2)
    subscriptions = [broadcaster.subscribe(EventFilter()) for _ in range(subscribers)]
    events = [samples.event(payload_bytes)]
    benchmark.pedantic(broadcaster.publish, args=(events,), rounds=ROUNDS, warmup_rounds=5)
    assert broadcaster.lagged_total == 0
    assert broadcaster.subscriber_count == len(subscriptions)
