"""`rig grpc --workers N`: several server processes on one port behave as one server.

The kernel, not Rigger, decides which worker accepts a connection. Tests that
depend on reaching every worker therefore open many connections of their own
(each channel with its own subchannel pool, so its own TCP connection), find
out from the workers' sockets which worker holds each one, and keep opening
connections, up to a bound, until every worker holds some.

Tests that tolerate each other's data share one module-wide 2-worker server
and reason from the log head they start at; tests that stop, kill or signal a
server start their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pathlib
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ports import listening_on_both_loopbacks
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from streams import (
    CREATED,
    HEAD_SEQUENCE,
    UPDATED,
    WAIT,
    add,
    add_many,
    assert_no_events_after,
    log_head,
    read_events,
    read_to_error,
    sequences,
    subscribe,
    subscribe_live,
    trailing,
)
from worker_processes import connection_holder, worker_pids

from testkit.serverproc import ServerProcess, rig
from testkit.wait import wait_until, wait_until_async

WORKERS = 2
# Each channel gets its own subchannel, hence its own TCP connection, which the
# kernel hands to one of the workers.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
# With this many connections, all of them landing on one worker is a sign the
# port is not shared, not bad luck.
MAX_CONNECTIONS = 64
# `rig` in a new session, so its process group can be signalled as a terminal would.
IN_OWN_GROUP = (
    sys.executable,
    "-c",
    "import os, sys; os.setsid(); "
    "os.execv(sys.executable, [sys.executable, '-m', 'rigger_server.cli', *sys.argv[1:]])",
)
TOKEN = "workers-token-for-tests"
ROTATED = "rotated-workers-token"


# --- servers and processes -------------------------------------------------------


def running(pids: Iterable[int]) -> list[int]:
    """Those of `pids` still running (a zombie waiting to be reaped has stopped)."""
    alive = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
    return alive


def wait_until_gone(pids: Iterable[int], within: float = WAIT) -> list[int]:
    """Wait up to `within` seconds for `pids` to stop; return those still running."""
    pids = list(pids)
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: not running(pids), "the processes to stop", within=within, every=0.05)
    return running(pids)


def kill_leftovers(pids: Iterable[int]) -> None:
    """SIGKILL whatever of `pids` still runs, so a failed test leaves no server behind."""
    for pid in running(pids):
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()


@contextlib.contextmanager
def workers_in(root: pathlib.Path, *extra: str, **kwargs: object) -> Iterator[ServerProcess]:
    """A fresh 2-worker server, stopped (and any worker left over killed) afterwards."""
    server = ServerProcess(root, extra_args=("--workers", str(WORKERS), *extra), **kwargs)
    server.start()
    assert server.proc is not None
    processes = [server.proc.pid, *(c.pid for c in psutil.Process(server.proc.pid).children())]
    try:
        yield server
    finally:
        server.stop()
        kill_leftovers(processes)


def error_block(stderr: str) -> str:
    """What `rig` printed from its `error:` line on (gRPC's own log lines come before)."""
    start = stderr.find("error:")
    assert start >= 0, f"no error: line in\n{stderr}"
    return stderr[start:]


# --- clients on known workers ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Client:
    """A channel with its own TCP connection, and the worker process holding that connection."""

    channel: grpc.aio.Channel
    stub: rigger_pb2_grpc.RiggerServiceStub
    worker: int


def _own_ports(server_port: int) -> set[int]:
    """Local ports of this process's established connections to `server_port`."""
    return {
        conn.laddr.port
        for conn in psutil.Process().net_connections(kind="tcp")
        if conn.status == psutil.CONN_ESTABLISHED and conn.raddr and conn.raddr.port == server_port
    }


async def _open_client(server: ServerProcess, workers: set[int]) -> Client:
    before = _own_ports(server.port)
    channel = grpc.aio.insecure_channel(server.address, options=OWN_CONNECTION)
    try:
        await asyncio.wait_for(channel.channel_ready(), WAIT)

        def holder() -> int | None:
            new = _own_ports(server.port) - before
            if len(new) != 1:
                return None
            return connection_holder(workers, server.port, next(iter(new)))

        worker = await wait_until_async(
            holder, "a worker holding the new connection (one new local port)", within=WAIT
        )
        return Client(channel, rigger_pb2_grpc.RiggerServiceStub(channel), worker)
    except BaseException:
        await channel.close()
        raise


@contextlib.asynccontextmanager
async def clients_across_workers(server: ServerProcess, count: int) -> AsyncIterator[list[Client]]:
    """At least `count` clients, each on its own connection, and every worker holding some."""
    workers = worker_pids(server)
    assert len(workers) == WORKERS, f"expected {WORKERS} worker processes, found {workers}"
    clients: list[Client] = []
    try:
        while len(clients) < count or {c.worker for c in clients} != workers:
            assert len(clients) < MAX_CONNECTIONS, (
                f"all {len(clients)} connections went to worker(s) "
                f"{sorted({c.worker for c in clients})} of {sorted(workers)}"
            )
            clients.append(await _open_client(server, workers))
        yield clients
    finally:
        await asyncio.gather(*(c.channel.close() for c in clients))


def one_per_worker(clients: list[Client]) -> list[Client]:
    """The first client on each worker, in the order the workers first appear."""
    chosen: dict[int, Client] = {}
    for client in clients:
        chosen.setdefault(client.worker, client)
    return list(chosen.values())


def workers_of(clients: Iterable[Client]) -> set[int]:
    """The workers holding these clients' connections."""
    return {c.worker for c in clients}


def serialized(events: Iterable[pb.TaskEvent]) -> list[bytes]:
    """Events as bytes, for comparing whole streams."""
    return [e.SerializeToString(deterministic=True) for e in events]


async def head_of(call: Any) -> int:
    """The `rigger-head-sequence` header of an open subscription."""
    metadata = dict(await asyncio.wait_for(call.initial_metadata(), WAIT))
    return int(metadata[HEAD_SEQUENCE])


async def settled_head(clients: list[Client]) -> int:
    """The log head, once every worker has published all of it (call it with no writes running).

    A worker publishes its own commits at once and the others' moments later,
    so right after a write through one worker another may still report an
    older head.
    """

    async def agreed() -> set[int]:
        heads = {await log_head(c.stub) for c in one_per_worker(clients)}
        return heads if len(heads) == 1 else set()

    return (
        await wait_until_async(agreed, "the workers to agree on the log head", within=WAIT)
    ).pop()


async def live_from_settled_head(clients: list[Client]) -> tuple[int, list[Any]]:
    """The settled log head, and a live subscription through each client starting right after it."""
    start = await settled_head(clients)
    calls = [await subscribe_live(c.stub) for c in clients]
    assert [await head_of(call) for call in calls] == [start] * len(calls)
    return start, calls


# --- fixtures --------------------------------------------------------------------


@pytest.fixture(scope="module")
def workers_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One 2-worker server for the tests that tolerate each other's data."""
    root = tmp_path_factory.mktemp("workers") / "project"
    root.mkdir()
    with workers_in(root) as server:
        yield server


@pytest.fixture
def token_file(project: pathlib.Path) -> pathlib.Path:
    path = project.parent / "tokens.txt"
    path.write_text(f"{TOKEN}\n")
    return path


# --- one server on one port ------------------------------------------------------


def test_the_banner_says_two_processes_share_the_port(workers_server: ServerProcess) -> None:
    port = workers_server.port
    assert f"   Address: [::1]:{port} (also 127.0.0.1:{port})\n" in workers_server.banner
    assert "   Workers: 2 processes sharing the port\n" in workers_server.banner


def test_two_worker_processes_listen_on_the_port_and_the_supervisor_does_not(
    workers_server: ServerProcess,
) -> None:
    assert workers_server.proc is not None
    supervisor = psutil.Process(workers_server.proc.pid)
    assert len(worker_pids(workers_server)) == 2
    assert not [c for c in supervisor.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]


async def test_every_worker_reports_serving(workers_server: ServerProcess) -> None:
    async with clients_across_workers(workers_server, 12) as clients:
        for client in one_per_worker(clients):
            health = health_pb2_grpc.HealthStub(client.channel)
            for service in ("", "rigger.v1.RiggerService"):
                reply = await health.Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=WAIT
                )
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, (
                    client.worker,
                    service,
                )


# --- one database, one event log -------------------------------------------------


async def test_every_subscriber_receives_every_event_written_through_any_worker_in_order(
    workers_server: ServerProcess,
) -> None:
    per_writer = 30
    async with (
        clients_across_workers(workers_server, 6) as readers,
        clients_across_workers(workers_server, 6) as writers,
    ):
        start, calls = await live_from_settled_head(readers)

        async def write(index: int, client: Client) -> list[str]:
            return [
                (await add(client.stub, f"writer {index} task {n}")).id for n in range(per_writer)
            ]

        written = await asyncio.gather(*(write(i, w) for i, w in enumerate(writers)))
        total = per_writer * len(writers)
        received = await asyncio.gather(
            *(read_events(call, total, within=3 * WAIT) for call in calls)
        )
        for call in calls:
            call.cancel()

    for events in received:
        assert sequences(events) == list(range(start + 1, start + total + 1))
        assert {e.event_type for e in events} == {CREATED}
        ids = [e.task.id for e in events]
        for ids_of_writer in written:  # each writer's tasks in the order it wrote them
            assert [i for i in ids if i in set(ids_of_writer)] == ids_of_writer
    assert all(serialized(events) == serialized(received[0]) for events in received)


async def test_replaying_subscribers_on_every_worker_get_the_same_gapless_log_as_live_ones(
    workers_server: ServerProcess,
) -> None:
    total = 600  # more than one replay page (500); half written before the replay starts
    async with (
        clients_across_workers(workers_server, 4) as writers,
        clients_across_workers(workers_server, 6) as readers,
    ):
        start, live = await live_from_settled_head(readers)

        def write_half(offset: int) -> asyncio.Future[list[None]]:
            # Every writer its share of one half; there may be more writers
            # than asked for (until every worker holds one), so shares differ.
            half, n = total // 2, len(writers)
            bounds = [offset + half * i // n for i in range(n + 1)]
            return asyncio.gather(
                *(
                    add_many(w.stub, bounds[i + 1] - bounds[i], start=bounds[i])
                    for i, w in enumerate(writers)
                )
            )

        await write_half(0)
        replaying = [subscribe(r.stub, after=start) for r in readers]
        second_half = write_half(total // 2)
        try:
            replayed = await asyncio.gather(
                *(read_events(call, total, within=3 * WAIT) for call in replaying)
            )
            await second_half
        finally:
            second_half.cancel()
        lived = await asyncio.gather(*(read_events(call, total, within=3 * WAIT) for call in live))
        for call in (*live, *replaying):
            call.cancel()

    expected = list(range(start + 1, start + total + 1))
    for events in (*replayed, *lived):
        assert sequences(events) == expected
    assert all(serialized(events) == serialized(lived[0]) for events in (*replayed, *lived))


async def test_a_task_written_through_one_worker_is_read_through_the_other(
    workers_server: ServerProcess,
) -> None:
    async with clients_across_workers(workers_server, 12) as clients:
        one, other = one_per_worker(clients)
        task = await add(one.stub, "written through one worker", assignee="alice")
        fetched = (await other.stub.GetTask(pb.GetTaskRequest(task_id=task.id))).task
        listed = await other.stub.ListTasks(pb.ListTasksRequest(assignee="alice"))
        updated = (
            await other.stub.UpdateTask(pb.UpdateTaskRequest(task_id=task.id, assignee="bob"))
        ).task
        refetched = (await one.stub.GetTask(pb.GetTaskRequest(task_id=task.id))).task
    assert fetched == task
    assert task.id in {t.id for t in listed.tasks}
    assert refetched == updated
    assert (refetched.version, refetched.assignee) == (2, "bob")


async def test_a_stale_expected_version_is_aborted_after_a_change_through_the_other_worker(
    workers_server: ServerProcess,
) -> None:
    async with clients_across_workers(workers_server, 12) as clients:
        one, other = one_per_worker(clients)
        task = await add(one.stub, "contested")
        await other.stub.UpdateTask(
            pb.UpdateTaskRequest(task_id=task.id, assignee="bob", expected_version=1)
        )
        head = await settled_head(clients)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await one.stub.UpdateTask(
                pb.UpdateTaskRequest(task_id=task.id, assignee="carol", expected_version=1)
            )
        stored = (await one.stub.GetTask(pb.GetTaskRequest(task_id=task.id))).task
        await assert_no_events_after(one.stub, head)
    assert raised.value.code() == grpc.StatusCode.ABORTED
    assert (stored.version, stored.assignee) == (2, "bob")


async def test_concurrent_updates_through_every_worker_to_one_task_are_all_applied(
    workers_server: ServerProcess,
) -> None:
    async with clients_across_workers(workers_server, 12) as clients:
        task = await add(clients[0].stub, "updated from everywhere")
        head = await settled_head(clients)
        titles = [f"title {n}" for n in range(3 * len(clients))]
        await asyncio.gather(
            *(
                clients[n % len(clients)].stub.UpdateTask(
                    pb.UpdateTaskRequest(task_id=task.id, title=title)
                )
                for n, title in enumerate(titles)
            )
        )
        final = (await clients[-1].stub.GetTask(pb.GetTaskRequest(task_id=task.id))).task
        call = subscribe(clients[0].stub, after=head)
        events = await read_events(call, len(titles))
        call.cancel()
    assert final.version == 1 + len(titles)
    assert [(e.event_type, e.task.id) for e in events] == [(UPDATED, task.id)] * len(titles)
    assert [e.task.version for e in events] == list(range(2, 2 + len(titles)))
    assert sorted(e.task.title for e in events) == sorted(titles)
    assert final.title == events[-1].task.title


# --- starting ------------------------------------------------------------------


def test_workers_with_an_empty_token_file_exit_2_naming_it(tmp_path: pathlib.Path) -> None:
    assert rig("init", cwd=tmp_path).returncode == 0
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    result = rig(
        "grpc", "--port", "0", "--workers", "2", "--auth-token-file", str(empty), cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert "error: --auth-token-file:" in result.stderr
    assert "holds no token" in result.stderr
    assert "Traceback" not in result.stderr


# --- the port --------------------------------------------------------------------


def test_workers_on_a_port_in_use_exit_1_saying_address_already_in_use(
    tmp_path: pathlib.Path,
) -> None:
    assert rig("init", cwd=tmp_path).returncode == 0
    sockets, port = listening_on_both_loopbacks()
    try:
        result = rig("grpc", "--port", str(port), "--workers", "2", cwd=tmp_path)
    finally:
        for s in sockets:
            s.close()
    assert result.returncode == 1, result.stderr
    assert "Address already in use" in result.stderr
    assert f"rig grpc --port {port + 1}" in result.stderr
    assert "Traceback" not in result.stderr


def test_workers_on_a_port_in_use_print_the_same_error_as_one_server(
    tmp_path: pathlib.Path,
) -> None:
    assert rig("init", cwd=tmp_path).returncode == 0
    sockets, port = listening_on_both_loopbacks()
    try:
        alone = rig("grpc", "--port", str(port), cwd=tmp_path)
        workers = rig("grpc", "--port", str(port), "--workers", "2", cwd=tmp_path)
    finally:
        for s in sockets:
            s.close()
    assert (workers.returncode, error_block(workers.stderr)) == (
        alone.returncode,
        error_block(alone.stderr),
    )


@pytest.mark.parametrize("workers", ["1", "2"], ids=["one-server", "workers"])
async def test_a_second_server_on_the_port_of_running_workers_exits_1_and_they_keep_serving(
    workers_server: ServerProcess, tmp_path: pathlib.Path, workers: str
) -> None:
    assert rig("init", cwd=tmp_path).returncode == 0
    result = await asyncio.to_thread(
        rig, "grpc", "--port", str(workers_server.port), "--workers", workers, cwd=tmp_path
    )
    assert result.returncode == 1, result.stderr
    assert "Address already in use" in result.stderr
    async with clients_across_workers(workers_server, 12) as clients:
        for client in one_per_worker(clients):
            reply = await health_pb2_grpc.HealthStub(client.channel).Check(
                health_pb2.HealthCheckRequest(), timeout=WAIT
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(
    ("family", "loopback"),
    [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")],
    ids=["127.0.0.1", "::1"],
)
def test_workers_on_a_port_taken_on_one_loopback_only_exit_1(
    tmp_path: pathlib.Path, family: socket.AddressFamily, loopback: str
) -> None:
    assert rig("init", cwd=tmp_path).returncode == 0
    with socket.socket(family, socket.SOCK_STREAM) as taken:
        taken.bind((loopback, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = rig("grpc", "--port", str(port), "--workers", "2", cwd=tmp_path)
    assert "Broadcast:" not in result.stdout, f"started though {loopback}:{port} is taken"
    assert result.returncode == 1, result.stderr
    assert "Address already in use" in result.stderr


# --- stopping --------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_stops_every_worker_and_exits_0(project: pathlib.Path) -> None:
    with workers_in(project) as server:
        assert server.proc is not None
        children = [c.pid for c in psutil.Process(server.proc.pid).children()]
        workers = worker_pids(server)
        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(timeout=3 * WAIT)
        output = server.banner
        left = wait_until_gone(children)
    assert code == 0, server.read_log()
    assert "Rigger gRPC Server stopped." in output
    assert workers <= set(children)
    assert left == [], f"still running after the server stopped: {left}"
    assert "exited unexpectedly" not in server.read_log()


@pytest.mark.slow
async def test_sigterm_ends_open_streams_on_every_worker_with_unavailable_naming_the_last_sequence(
    project: pathlib.Path,
) -> None:
    with workers_in(project) as server:
        async with clients_across_workers(server, 12) as clients:
            for n in range(3):
                await add(clients[n].stub, f"task {n}")
            calls = [subscribe(c.stub, after=0) for c in clients]
            for call in calls:
                await read_events(call, 3)
            code = await asyncio.to_thread(server.stop)
            ends = await asyncio.gather(*(read_to_error(call) for call in calls))
    assert code == 0
    for events, error in ends:
        assert events == []
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "last sequence received: 3" in error.details()
        assert trailing(error, "rigger-last-sequence") == "3"


@pytest.mark.slow
def test_ctrl_c_stops_every_worker_and_exits_0_without_a_traceback(project: pathlib.Path) -> None:
    # Ctrl-C signals the terminal's whole process group: the supervisor and
    # every worker at once. The server gets a group of its own to signal.
    with workers_in(project, command=IN_OWN_GROUP) as server:
        assert server.proc is not None
        group = server.proc.pid
        assert os.getpgid(group) == group != os.getpgrp()
        children = [c.pid for c in psutil.Process(group).children()]
        os.killpg(group, signal.SIGINT)
        code = server.proc.wait(3 * WAIT)
        left = wait_until_gone(children)
    log = server.read_log()
    assert code == 0, log
    assert left == []
    assert "Traceback" not in log
    assert "KeyboardInterrupt" not in log


# --- a worker or the supervisor dies ---------------------------------------------


@pytest.mark.slow
def test_a_dead_worker_stops_the_others_and_the_server_exits_1_naming_it(
    project: pathlib.Path,
) -> None:
    with workers_in(project) as server:
        assert server.proc is not None
        victim, *survivors = sorted(worker_pids(server))
        os.kill(victim, signal.SIGKILL)
        code = server.proc.wait(3 * WAIT)
        left = wait_until_gone(survivors)
    log = server.read_log()
    assert code == 1, log
    assert left == [], f"workers still running after the server exited: {left}"
    deaths = re.findall(r"rigger-worker-\d+ exited unexpectedly \(code -9\)", log)
    assert len(deaths) == 1, log


@pytest.mark.slow
async def test_when_a_worker_dies_every_open_stream_ends_with_unavailable(
    project: pathlib.Path,
) -> None:
    with workers_in(project) as server:
        assert server.proc is not None
        async with clients_across_workers(server, 12) as clients:
            await add(clients[0].stub, "before the crash")
            calls = [subscribe(c.stub, after=0) for c in clients]
            for call in calls:
                await read_events(call, 1)
            victim = clients[0].worker
            os.kill(victim, signal.SIGKILL)
            ends = await asyncio.gather(*(read_to_error(call, within=3 * WAIT) for call in calls))
            code = await asyncio.to_thread(server.proc.wait, 3 * WAIT)
    assert code == 1
    for client, (events, error) in zip(clients, ends, strict=True):
        assert events == []
        assert error.code() == grpc.StatusCode.UNAVAILABLE, (client.worker == victim, error)
        if client.worker != victim:  # the survivor stopped gracefully
            assert trailing(error, "rigger-last-sequence") == "1"


@pytest.mark.slow
async def test_tasks_committed_before_a_worker_died_are_served_after_a_restart(
    project: pathlib.Path,
) -> None:
    with workers_in(project) as server:
        assert server.proc is not None
        async with clients_across_workers(server, 12) as clients:
            tasks = [await add(c.stub, f"task {n}") for n, c in enumerate(clients)]
            os.kill(clients[0].worker, signal.SIGKILL)
        assert await asyncio.to_thread(server.proc.wait, 3 * WAIT) == 1
        server.stop()
        server.start()
        async with clients_across_workers(server, 12) as clients:
            listed = await clients[0].stub.ListTasks(pb.ListTasksRequest())
            replays = [subscribe(c.stub, after=0) for c in one_per_worker(clients)]
            replayed = [await read_events(call, len(tasks)) for call in replays]
            for call in replays:
                call.cancel()
    assert {t.id for t in listed.tasks} == {t.id for t in tasks}
    for events in replayed:
        assert sequences(events) == list(range(1, len(tasks) + 1))
        assert [e.task.id for e in events] == [t.id for t in tasks]


@pytest.mark.slow
def test_workers_do_not_outlive_a_killed_supervisor(project: pathlib.Path) -> None:
    with workers_in(project) as server:
        workers = worker_pids(server)
        server.kill()
        left = wait_until_gone(workers)
    assert left == [], f"workers {left} kept running after the supervisor was killed"


# --- tokens ----------------------------------------------------------------------


@pytest.mark.slow
async def test_sighup_reloads_the_token_file_in_every_worker(
    project: pathlib.Path, token_file: pathlib.Path
) -> None:
    def call(client: Client, token: str) -> object:
        return client.stub.AddTask(
            pb.AddTaskRequest(title="t"),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=WAIT,
        )

    with workers_in(project, "--auth-token-file", str(token_file), token=TOKEN) as server:
        assert server.proc is not None
        async with clients_across_workers(server, 12) as clients:
            for client in clients:
                await call(client, TOKEN)
            await asyncio.to_thread(token_file.write_text, f"{ROTATED}\n")
            server.proc.send_signal(signal.SIGHUP)
            for client in clients:

                async def accepted(client: Client = client) -> bool:
                    try:
                        await call(client, ROTATED)
                    except grpc.aio.AioRpcError as error:
                        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
                        return False
                    return True

                await wait_until_async(
                    accepted, f"worker {client.worker} to accept the rotated token", within=WAIT
                )
                with pytest.raises(grpc.aio.AioRpcError) as old:
                    await call(client, TOKEN)
                assert old.value.code() == grpc.StatusCode.UNAUTHENTICATED, client.worker
            assert workers_of(clients) == worker_pids(server)
        assert server.proc.poll() is None, "SIGHUP stopped the server"
