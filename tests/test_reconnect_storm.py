"""A storm of subscriptions (every sidecar reconnecting after a restart) is served, not refused.

gRPC's core turns calls away once more than a thousand wait to be accepted,
and the asyncio server accepts one per pass of its loop; the server raises
that bound to what it may hold (`--max-subscribers`).
"""

from __future__ import annotations

import asyncio

import grpc
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from streams import HEAD_SEQUENCE, WAIT

STREAMS = 3000
CONNECTIONS = 8
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


async def test_three_thousand_subscriptions_opened_at_once_all_stay_open(server):
    channels = [
        grpc.aio.insecure_channel(server.address, options=OWN_CONNECTION)
        for _ in range(CONNECTIONS)
    ]
    stubs = [rigger_pb2_grpc.RiggerServiceStub(channel) for channel in channels]
    calls = [
        stubs[i % CONNECTIONS].SubscribeToTaskEvents(pb.SubscribeToTaskEventsRequest())
        for i in range(STREAMS)
    ]
    try:
        headers = await asyncio.gather(
            *(asyncio.wait_for(call.initial_metadata(), 6 * WAIT) for call in calls)
        )
        ended = [await call.code() for call in calls if call.done()]
        assert ended == []
        assert all(HEAD_SEQUENCE in dict(h) for h in headers)
    finally:
        for call in calls:
            call.cancel()
        for channel in channels:
            await channel.close()
