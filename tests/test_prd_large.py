"""A large PRD is parsed in linear time, off the event loop: the server keeps serving meanwhile."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc

MIB = 1024 * 1024
HEAD = "# Many items\n\n## Objectives\n"
# The shape that made the parse quadratic: one top-level item per line.
ITEM = "- a\n"


# Rounds of (health check, write, its live event) that must complete while
# the parse is still running.
ROUNDS_DURING_PARSE = 5


def items_prd(size: int) -> str:
    return HEAD + ITEM * ((size - len(HEAD)) // len(ITEM))


async def test_health_and_live_events_flow_while_a_large_prd_is_parsed(server):
    count = (MIB // 4 - len(HEAD)) // len(ITEM)
    (server.root / "big.md").write_text(items_prd(MIB // 4))
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        events = stub.SubscribeToTaskEvents(pb.SubscribeToTaskEventsRequest())
        await events.initial_metadata()
        parse = asyncio.ensure_future(
            stub.ParsePRD(pb.ParsePRDRequest(prd_file_path="big.md"), timeout=110)
        )
        rounds = 0
        while not parse.done() and rounds < ROUNDS_DURING_PARSE:
            checked = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert checked.status == health_pb2.HealthCheckResponse.SERVING
            added = await stub.AddTask(pb.AddTaskRequest(title=f"during {rounds}"), timeout=10)
            event = await asyncio.wait_for(events.read(), 10)
            assert event.task.id == added.task.id
            if not parse.done():
                rounds += 1
        parsed = await parse
        events.cancel()
    assert rounds == ROUNDS_DURING_PARSE, f"only {rounds} rounds completed during the parse"
    assert len(parsed.objectives) == count
