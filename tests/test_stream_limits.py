"""One connection cannot make the server hold unbounded calls.

A call's HTTP/2 stream costs the server memory from its headers on, before
any request arrives. The server advertises a per-connection stream limit
(`--max-streams-per-connection`) and refuses streams beyond it; and with
`--auth-token-file` a call without a valid token is answered UNAUTHENTICATED
as soon as its headers arrive, so it holds nothing while the caller never
sends a body. The hostile client is raw HTTP/2 (tests/raw_http2.py): it opens
streams beyond the advertised limit and never sends a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from raw_http2 import REFUSED, RawConnection
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from rigger_server.limits import Limits
from streams import HEAD_SEQUENCE, WAIT

from testkit.serverproc import ServerProcess
from testkit.wait import wait_until

ADD_TASK = "/rigger.v1.RiggerService/AddTask"
SUBSCRIBE = "/rigger.v1.RiggerService/SubscribeToTaskEvents"
BATCHES = "/rigger.v1.RiggerService/SubscribeToTaskEventBatches"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
UNAUTHENTICATED = str(grpc.StatusCode.UNAUTHENTICATED.value[0])
CANCELLED = grpc.StatusCode.CANCELLED
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
TOKEN = "stream-limit-test-token"

# Streams opened in the memory test: each held one cost ~21 KiB before the
# limit (5000 took the server from 45 to 150 MiB).
FLOOD = 5000
# What the server may grow by for FLOOD bodiless streams: the default limit's
# 1000 held streams cost ~21 MiB; without the limit they cost ~105 MiB.
FLOOD_GROWTH_MIB = 50


def settled_rss(pid: int, within: float = 60.0) -> float:
    """The process's RSS in MiB once it stops moving (the server accepts calls one per pass)."""
    process = psutil.Process(pid)
    samples = [process.memory_info().rss / 2**20]

    def settled() -> bool:
        samples.append(process.memory_info().rss / 2**20)
        recent = samples[-4:]
        return len(recent) == 4 and max(recent) - min(recent) < 1.0

    # Still moving after `within`: the last sample is the answer all the same.
    with contextlib.suppress(TimeoutError):
        wait_until(settled, "the RSS to settle", within=within, every=0.25)
    return samples[-1]


def test_streams_beyond_the_per_connection_limit_are_refused(project):
    server = ServerProcess(project, extra_args=("--max-streams-per-connection", "50")).start()
    raw = RawConnection(server.port)
    try:
        assert raw.max_concurrent_streams == 50
        raw.open(ADD_TASK, 80)
        raw.sync()
        # 50 wait for a body that never comes; the other 30 were refused.
        assert raw.summary() == {REFUSED: 30}
        with grpc.insecure_channel(server.address) as channel:
            stub = rigger_pb2_grpc.RiggerServiceStub(channel)
            assert stub.AddTask(pb.AddTaskRequest(title="served"), timeout=WAIT).task.id
    finally:
        raw.close()
        server.stop()


def test_the_default_limit_bounds_what_five_thousand_bodiless_streams_cost(project):
    server = ServerProcess(project).start()
    limit = Limits().max_streams_per_connection
    before = settled_rss(server.proc.pid)
    raw = RawConnection(server.port)
    try:
        assert raw.max_concurrent_streams == limit
        raw.open(ADD_TASK, FLOOD)
        raw.sync(within=60.0)
        after = settled_rss(server.proc.pid)
        assert raw.summary() == {REFUSED: FLOOD - limit}
    finally:
        raw.close()
        server.stop()
    print(f"server RSS {before:.0f} MiB -> {after:.0f} MiB with {FLOOD} bodiless streams")
    assert after - before < FLOOD_GROWTH_MIB


@pytest.fixture
def token_server(project: pathlib.Path):
    """A token server allowing 20 streams per connection."""
    tokens = project.parent / "tokens.txt"
    tokens.write_text(f"{TOKEN}\n")
    proc = ServerProcess(
        project,
        extra_args=("--auth-token-file", str(tokens), "--max-streams-per-connection", "20"),
        token=TOKEN,
    ).start()
    yield proc
    proc.stop()


@pytest.mark.parametrize("path", [ADD_TASK, SUBSCRIBE, BATCHES, HEALTH_CHECK])
@pytest.mark.parametrize("token", [None, "not-the-token"], ids=["no-token", "wrong-token"])
def test_a_call_without_a_valid_token_is_refused_at_its_headers(token_server, path, token):
    raw = RawConnection(token_server.port)
    try:
        # Ten times the limit, a limit's worth at a time: each is answered
        # without a body. The server frees an answered call's slot a moment
        # after resetting it, so a few of the next wave may be refused: that
        # costs nothing, and they are opened again.

        def refused_enough() -> bool:
            wave = raw.open(path, 20, token=token)
            raw.read_until(lambda: raw.finished(wave), within=WAIT)
            return raw.summary().get(UNAUTHENTICATED, 0) >= 200

        wait_until(refused_enough, "200 calls refused UNAUTHENTICATED", within=6 * WAIT)
        assert set(raw.summary()) <= {UNAUTHENTICATED, REFUSED}
        assert raw.bodies == {}
    finally:
        raw.close()


def test_a_valid_token_still_waits_for_its_body(token_server):
    raw = RawConnection(token_server.port)
    try:
        raw.open(ADD_TASK, 30, token=TOKEN)
        raw.sync()
        # Authenticated: 20 held (waiting for a request), 10 refused.
        assert raw.summary() == {REFUSED: 10}
        with token_server.channel() as channel:
            health = health_pb2_grpc.HealthStub(channel)
            reply = health.Check(
                health_pb2.HealthCheckRequest(),
                metadata=(("authorization", f"Bearer {TOKEN}"),),
                timeout=WAIT,
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        raw.close()


async def test_a_client_beyond_the_limit_is_served_once_a_slot_frees(project):
    server = ServerProcess(project, extra_args=("--max-streams-per-connection", "2")).start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = rigger_pb2_grpc.RiggerServiceStub(channel)
            request = pb.SubscribeToTaskEventsRequest()
            calls = [stub.SubscribeToTaskEvents(request) for _ in range(3)]
            headers = {asyncio.ensure_future(call.initial_metadata()): call for call in calls}
            # The client starts two, in any order, and holds the third back.
            started: set[asyncio.Future[object]] = set()
            while len(started) < 2:
                done, _ = await asyncio.wait(
                    set(headers) - started, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED
                )
                assert done, "no subscription started"
                started |= done
            (waiting,) = set(headers) - started
            headers[next(iter(started))].cancel()
            metadata = await asyncio.wait_for(waiting, WAIT)
            assert HEAD_SEQUENCE in dict(metadata)  # type: ignore[call-overload]
            for call in calls:
                call.cancel()
    finally:
        server.stop()


def test_calls_held_over_many_connections_are_bounded_by_the_server_as_a_whole(project):
    # 4 connections of 50 bodiless calls, each within the per-connection
    # limit, opened at a pace the server keeps up with, against a server that
    # takes 10 streams + 30 unary calls: it takes 40, gRPC's core keeps at
    # most 3 x --max-subscribers more waiting to be taken
    # (grpc.server.max_pending_requests_hard_limit), and cancels the rest at
    # once. Without the server-wide bound it took and held all 200.
    server = ServerProcess(
        project, extra_args=("--max-subscribers", "10", "--max-unary-calls", "30")
    ).start()
    try:
        held_calls_are_bounded(server)
        # The calls held are released with their connections: the server serves again.
        with grpc.insecure_channel(server.address) as channel:
            stub = rigger_pb2_grpc.RiggerServiceStub(channel)
            assert stub.AddTask(pb.AddTaskRequest(title="served"), timeout=WAIT).task.id
    finally:
        server.stop()


def held_calls_are_bounded(server: ServerProcess) -> None:
    """Open 200 bodiless calls over 4 connections; the server answers all but 70 at once."""
    raws = [RawConnection(server.port) for _ in range(4)]
    most_held = 40 + 3 * 10
    ended = {str(code.value[0]) for code in (CANCELLED, RESOURCE_EXHAUSTED)}
    try:
        # Ten at a time, each group read by the server before the next, so
        # that nothing is turned away for arriving in a burst.
        for raw in raws:
            for _ in range(5):
                raw.open(ADD_TASK, 10)
                raw.sync()

        def answered() -> int:
            return sum(sum(raw.summary().values()) for raw in raws)

        def enough_answered() -> bool:
            for raw in raws:  # each reads its own socket a little, in turn
                with contextlib.suppress(TimeoutError):
                    raw.read_until(lambda: answered() >= 200 - most_held, within=0.2)
            return answered() >= 200 - most_held

        with contextlib.suppress(TimeoutError):
            wait_until(enough_answered, f"{200 - most_held} calls answered", within=WAIT, every=0)
        summaries = [raw.summary() for raw in raws]
        assert answered() >= 200 - most_held, summaries
        assert {code for summary in summaries for code in summary} <= ended, summaries
    finally:
        for raw in raws:
            raw.close()
