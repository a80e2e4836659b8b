"""Replicas on one PostgreSQL database: one log, one order, and nothing lost when things fail.

Every replica is a real `rig grpc --db postgresql://…` process on a throwaway
cluster (`tests/pg.py`); the failures are real too: PostgreSQL stopped and
started again, a replica SIGKILLed mid-writes.
"""

from __future__ import annotations

import asyncio
import pathlib
import random
import threading
from collections.abc import Iterator

import grpc
import pg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from streams import CREATED, add, log_head, read_events, sequences, subscribe, subscribe_live

from testkit.serverproc import ServerProcess
from testkit.wait import wait_until, wait_until_async

EVENTS = 200
CRASH_ROUNDS = 6
WAIT = 30.0


def _start_replicas(tmp_path: pathlib.Path, url: str, count: int = 2) -> list[ServerProcess]:
    servers = []
    for index in range(count):
        root = tmp_path / f"replica-{index}"
        root.mkdir()
        servers.append(ServerProcess(root, db=url).start())
    return servers


@pytest.fixture
def replicas(tmp_path: pathlib.Path) -> Iterator[tuple[str, list[ServerProcess]]]:
    """Two replicas on a fresh database, and the database's URL."""
    url = pg.fresh_database()
    servers = _start_replicas(tmp_path, url)
    try:
        yield url, servers
    finally:
        for server in servers:
            server.stop()


def _log_sequences(url: str) -> list[int]:
    text = pg.cluster().sql(
        "SELECT sequence FROM rigger.events ORDER BY sequence", url.rsplit("/", 1)[1]
    )
    return [int(line) for line in text.split()]


def _health(server: ServerProcess) -> int:
    with server.channel() as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        except grpc.RpcError:
            return -1
        return int(reply.status)


async def test_each_replicas_subscribers_get_every_event_written_through_either(replicas):
    _, (one, two) = replicas
    async with (
        grpc.aio.insecure_channel(one.address) as to_one,
        grpc.aio.insecure_channel(two.address) as to_two,
    ):
        stubs = [rigger_pb2_grpc.RiggerServiceStub(c) for c in (to_one, to_two)]
        watchers = [await subscribe_live(stub) for stub in stubs]
        await asyncio.gather(*(add(stubs[i % 2], f"task {i}") for i in range(EVENTS)))
        for watcher in watchers:
            events = await read_events(watcher, EVENTS)
            assert sequences(events) == list(range(1, EVENTS + 1))
            assert {e.event_type for e in events} == {CREATED}
            watcher.cancel()


async def test_expected_version_holds_across_replicas(replicas):
    _, (one, two) = replicas
    async with (
        grpc.aio.insecure_channel(one.address) as to_one,
        grpc.aio.insecure_channel(two.address) as to_two,
    ):
        stubs = [rigger_pb2_grpc.RiggerServiceStub(c) for c in (to_one, to_two)]
        task = await add(stubs[0], "contended")
        version = task.version
        for round_number in range(10):
            outcomes = await asyncio.gather(
                *(
                    stubs[w % 2].UpdateTask(
                        pb.UpdateTaskRequest(
                            task_id=task.id, title=f"{round_number}/{w}", expected_version=version
                        )
                    )
                    for w in range(6)
                ),
                return_exceptions=True,
            )
            winners = [o for o in outcomes if not isinstance(o, BaseException)]
            losers = [o for o in outcomes if isinstance(o, BaseException)]
            assert len(winners) == 1, outcomes
            assert all(
                isinstance(e, grpc.aio.AioRpcError) and e.code() == grpc.StatusCode.ABORTED
                for e in losers
            ), losers
            version = winners[0].task.version
        final = (await stubs[1].GetTask(pb.GetTaskRequest(task_id=task.id))).task
        assert final.version == 11


async def test_a_postgresql_restart_fails_writes_unavailable_and_streams_catch_up(replicas):
    _, (one, two) = replicas
    cluster = pg.cluster()
    async with (
        grpc.aio.insecure_channel(one.address) as to_one,
        grpc.aio.insecure_channel(two.address) as to_two,
    ):
        stubs = [rigger_pb2_grpc.RiggerServiceStub(c) for c in (to_one, to_two)]
        watchers = [await subscribe_live(stub) for stub in stubs]
        for i in range(5):
            await add(stubs[i % 2], f"before {i}")
        for watcher in watchers:
            assert sequences(await read_events(watcher, 5)) == [1, 2, 3, 4, 5]

        await asyncio.to_thread(cluster.stop)
        try:
            for stub in stubs:
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await stub.AddTask(pb.AddTaskRequest(title="while down"), timeout=WAIT)
                assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "database is unavailable" in failed.value.details()
        finally:
            await asyncio.to_thread(cluster.start)

        # The streams stayed open; once writes work again they carry on at 6.
        async def write_when_back(stub: rigger_pb2_grpc.RiggerServiceStub, title: str) -> None:
            async def written() -> bool:
                try:
                    await stub.AddTask(pb.AddTaskRequest(title=title), timeout=WAIT)
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE
                    return False
                return True

            await wait_until_async(written, "writes to work again", within=WAIT, every=0.1)

        for i in range(5):
            await write_when_back(stubs[i % 2], f"after {i}")
        for watcher in watchers:
            assert sequences(await read_events(watcher, 5, within=WAIT)) == [6, 7, 8, 9, 10]
            watcher.cancel()


def test_health_is_not_serving_while_the_database_is_unreachable(replicas):
    _, (one, _) = replicas
    cluster = pg.cluster()
    serving = health_pb2.HealthCheckResponse.SERVING
    assert _health(one) == serving
    cluster.stop()
    try:
        wait_until(
            lambda: _health(one) == health_pb2.HealthCheckResponse.NOT_SERVING,
            "health turns NOT_SERVING",
        )
    finally:
        cluster.start()
    wait_until(lambda: _health(one) == serving, "health turns SERVING again")


def _writer(address: str, acked: list[str], stop: threading.Event) -> None:
    """Add tasks until told to stop or the replica dies, recording every acknowledged id."""
    with grpc.insecure_channel(address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        n = 0
        while not stop.is_set():
            try:
                reply = stub.AddTask(pb.AddTaskRequest(title=f"write {n}"), timeout=10)
            except grpc.RpcError:
                return
            acked.append(reply.task.id)
            n += 1


def _follow(address: str, after: int, seen: list[int]) -> None:
    """Record every sequence a subscriber resuming after `after` receives, until the stream ends."""
    with grpc.insecure_channel(address) as channel:
        stream = rigger_pb2_grpc.RiggerServiceStub(channel).SubscribeToTaskEvents(
            pb.SubscribeToTaskEventsRequest(after_sequence=after)
        )
        try:
            for event in stream:
                seen.append(event.sequence)
        except grpc.RpcError:
            return


async def _resume(address: str, after: int, until: int) -> list[int]:
    async with grpc.aio.insecure_channel(address) as channel:
        call = subscribe(rigger_pb2_grpc.RiggerServiceStub(channel), after=after)
        try:
            return sequences(await read_events(call, until - after, within=WAIT))
        finally:
            call.cancel()


async def test_sigkill_of_a_replica_mid_writes_loses_nothing_and_its_subscribers_move(replicas):
    url, servers = replicas
    rng = random.Random(13)
    acked: list[str] = []
    position = 0  # where the subscriber that moves between replicas has read to
    for round_number in range(CRASH_ROUNDS):
        victim, survivor = servers[round_number % 2], servers[(round_number + 1) % 2]
        seen: list[int] = []
        follower = threading.Thread(target=_follow, args=(victim.address, position, seen))
        follower.start()
        stop = threading.Event()
        round_acked: list[str] = []
        writers = [
            threading.Thread(target=_writer, args=(server.address, round_acked, stop))
            for server in (victim, victim, survivor)
        ]
        for writer in writers:
            writer.start()
        crash_after = rng.randint(5, 60)
        await wait_until_async(
            lambda acked=round_acked, n=crash_after: len(acked) >= n, "the writers make progress"
        )
        victim.kill()
        stop.set()
        for thread in (*writers, follower):
            await asyncio.to_thread(thread.join, WAIT)
        acked += round_acked

        log = _log_sequences(url)
        assert log == list(range(1, len(log) + 1)), "the event log has a gap"
        head = log[-1]
        # The subscriber got a gapless prefix from the victim, then resumes on
        # the survivor from its last sequence and misses nothing.
        assert seen == list(range(position + 1, position + 1 + len(seen)))
        last = seen[-1] if seen else position
        resumed = await _resume(survivor.address, last, head)
        assert [*seen, *resumed] == list(range(position + 1, head + 1))
        position = head

        async with grpc.aio.insecure_channel(survivor.address) as channel:
            stub = rigger_pb2_grpc.RiggerServiceStub(channel)
            for task_id in round_acked:
                await stub.GetTask(pb.GetTaskRequest(task_id=task_id))
        await asyncio.to_thread(victim.start)
    assert len(acked) > CRASH_ROUNDS * 5
    print(f"{len(acked)} acknowledged writes checked across {CRASH_ROUNDS} replica SIGKILLs")


async def test_a_replica_started_later_publishes_what_others_wrote(tmp_path: pathlib.Path):
    url = pg.fresh_database()
    (first,) = _start_replicas(tmp_path, url, count=1)
    try:
        async with grpc.aio.insecure_channel(first.address) as channel:
            stub = rigger_pb2_grpc.RiggerServiceStub(channel)
            for i in range(3):
                await add(stub, f"early {i}")
        late_root = tmp_path / "late"
        late_root.mkdir()
        late = ServerProcess(late_root, db=url).start()
        try:
            async with (
                grpc.aio.insecure_channel(first.address) as to_first,
                grpc.aio.insecure_channel(late.address) as to_late,
            ):
                watcher = await subscribe_live(rigger_pb2_grpc.RiggerServiceStub(to_late))
                await add(rigger_pb2_grpc.RiggerServiceStub(to_first), "after the late one")
                assert sequences(await read_events(watcher, 1)) == [4]
                watcher.cancel()
        finally:
            late.stop()
    finally:
        first.stop()


async def test_a_write_answered_by_one_replica_is_within_the_head_of_a_subscription_on_another(
    replicas,
):
    _, (one, two) = replicas
    async with (
        grpc.aio.insecure_channel(one.address) as to_one,
        grpc.aio.insecure_channel(two.address) as to_two,
    ):
        writer = rigger_pb2_grpc.RiggerServiceStub(to_one)
        reader = rigger_pb2_grpc.RiggerServiceStub(to_two)
        for written in range(1, 21):
            await add(writer, f"task {written}")
            assert await log_head(reader) == written
