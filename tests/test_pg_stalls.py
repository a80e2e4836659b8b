"""A stalled PostgreSQL: calls give up in bounded time, health says so, and nothing commits late.

Two stalls, both real: the `rigger.log_head` row locked by another session
(every write transaction takes that lock first), and every PostgreSQL process
stopped with SIGSTOP, which no server-side timeout can end. A write whose
caller was told DEADLINE_EXCEEDED or UNAVAILABLE must never be committed
afterwards, when the stall ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import signal
from collections.abc import Callable, Iterator

import grpc
import pg
import psutil
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc

from testkit.serverproc import ServerProcess
from testkit.wait import wait_until_async

WAIT = 30.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _database(url: str) -> str:
    return url.rsplit("/", 1)[1]


def titles(url: str) -> list[str]:
    """Every task's title, oldest first."""
    text = pg.cluster().sql("SELECT title FROM rigger.tasks ORDER BY seq", _database(url))
    return text.split("\n") if text else []


def log(url: str) -> tuple[list[int], int]:
    """The event log's sequences, and the head row."""
    sequences = pg.cluster().sql(
        "SELECT sequence FROM rigger.events ORDER BY sequence", _database(url)
    )
    head = pg.cluster().sql("SELECT sequence FROM rigger.log_head", _database(url))
    return [int(s) for s in sequences.split()], int(head)


@contextlib.contextmanager
def head_locked(url: str) -> Iterator[None]:
    """Another session holds the log head's row lock until the block ends."""
    with psycopg.connect(url) as conn:
        conn.execute("SELECT sequence FROM rigger.log_head FOR UPDATE")
        try:
            yield
        finally:
            conn.rollback()


@contextlib.contextmanager
def postgresql_stopped() -> Iterator[None]:
    """Every process of the cluster stopped (SIGSTOP) until the block ends (SIGCONT)."""
    cluster = pg.cluster()
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    parent = psutil.Process(postmaster)
    processes = [parent, *parent.children(recursive=True)]
    for process in processes:
        process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGCONT)


async def health(channel: grpc.aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=5
    )
    return int(reply.status)


async def wait_for_health(channel: grpc.aio.Channel, status: int) -> None:
    async def turned() -> bool:
        return await health(channel) == status

    await wait_until_async(turned, f"health to turn {status}", within=WAIT, every=0.1)


async def add_when_back(stub: rigger_pb2_grpc.RiggerServiceStub, title: str) -> pb.Task:
    """AddTask, retrying while the database is still coming back."""

    async def added() -> pb.Task | None:
        try:
            return (await stub.AddTask(pb.AddTaskRequest(title=title), timeout=WAIT)).task
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
            return None

    return await wait_until_async(added, "writes to work again", within=WAIT, every=0.1)


def start(tmp_path: pathlib.Path, url: str, timeout: float) -> ServerProcess:
    return ServerProcess(
        tmp_path, db=url, extra_args=("--db-timeout-seconds", str(timeout))
    ).start()


async def refused(call: Callable[[], object], *codes: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call()  # type: ignore[misc]
    assert failed.value.code() in codes, failed.value
    return failed.value


async def test_a_write_whose_deadline_passed_behind_a_locked_head_is_never_committed(
    tmp_path: pathlib.Path,
):
    url = pg.fresh_database()
    server = start(tmp_path, url, timeout=60)  # the lock outlasts the deadline, not the timeout
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = rigger_pb2_grpc.RiggerServiceStub(channel)
            with head_locked(url):
                await refused(
                    lambda: stub.AddTask(pb.AddTaskRequest(title="late"), timeout=1.5),
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                )
                # The database answers: only this one row is locked.
                assert await health(channel) == SERVING
            # The lock is gone: the writer takes it, and finds the write's deadline passed.
            after = await add_when_back(stub, "after")
    finally:
        server.stop()
    assert titles(url) == ["after"]
    assert log(url) == ([1], 1)
    assert after.version == 1


async def test_a_write_behind_a_head_locked_longer_than_the_db_timeout_is_unavailable(
    tmp_path: pathlib.Path,
):
    url = pg.fresh_database()
    server = start(tmp_path, url, timeout=1)
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = rigger_pb2_grpc.RiggerServiceStub(channel)
            with head_locked(url):
                # A 30 s deadline, and the lock held until this call has its answer.
                error = await refused(
                    lambda: stub.AddTask(pb.AddTaskRequest(title="blocked"), timeout=WAIT),
                    grpc.StatusCode.UNAVAILABLE,
                )
                assert "timeout" in error.details()
                assert await health(channel) == SERVING
            await add_when_back(stub, "after")
    finally:
        server.stop()
    assert titles(url) == ["after"]
    assert log(url) == ([1], 1)


async def test_a_stopped_postgresql_fails_writes_in_bounded_time_commits_none_of_them_later(
    tmp_path: pathlib.Path,
):
    url = pg.fresh_database()
    server = start(tmp_path, url, timeout=1)
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = rigger_pb2_grpc.RiggerServiceStub(channel)
            await add_when_back(stub, "before")
            with postgresql_stopped():
                # One call with a deadline, one without: PostgreSQL stays
                # stopped until both have their answers.
                await asyncio.gather(
                    refused(
                        lambda: stub.AddTask(pb.AddTaskRequest(title="stalled"), timeout=5),
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        grpc.StatusCode.UNAVAILABLE,
                    ),
                    refused(
                        lambda: stub.AddTask(pb.AddTaskRequest(title="stalled too"), timeout=WAIT),
                        grpc.StatusCode.UNAVAILABLE,
                    ),
                )
                await wait_for_health(channel, NOT_SERVING)
            await wait_for_health(channel, SERVING)
            await add_when_back(stub, "after")
    finally:
        server.stop()
    assert titles(url) == ["before", "after"]
    assert log(url) == ([1, 2], 2)
