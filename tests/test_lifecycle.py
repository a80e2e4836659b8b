"""The server's life: restarts, crashes, shutdown, discovery, and the `rig` command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from ports import listening_on_both_loopbacks
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from streams import (
    WAIT,
    add,
    read_events,
    read_to_error,
    replay_all,
    sequences,
    subscribe,
    trailing,
)

from testkit.serverproc import RIG, ServerProcess, rig
from testkit.wait import wait_until


@contextlib.asynccontextmanager
async def connect(address: str):
    async with grpc.aio.insecure_channel(address) as channel:
        yield rigger_pb2_grpc.RiggerServiceStub(channel)


@contextlib.contextmanager
def running_rig(*args: str, cwd) -> Iterator[tuple[subprocess.Popen[str], str, int]]:
    """Start `rig grpc ARGS` in `cwd`; yield the process, its banner and its port."""
    proc = subprocess.Popen(
        [*RIG, "grpc", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("   Broadcast:"):
                break
        banner = "".join(lines)
        match = re.search(r"Address: \S+:(\d+)", banner)
        assert match, f"no address in the banner: {banner!r}"
        yield proc, banner, int(match.group(1))
    finally:
        proc.terminate()
        proc.wait(20)
        if proc.stdout:
            proc.stdout.close()


def serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=WAIT)
        except grpc.FutureTimeoutError:
            return False
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=WAIT
        )
        return reply.status == health_pb2.HealthCheckResponse.SERVING


# --- restart and crash ----------------------------------------------------------


async def test_a_restart_keeps_every_task_and_event(server):
    async with connect(server.address) as stub:
        kept = await add(stub, "kept", assignee="alice")
        gone = await add(stub, "gone")
        await stub.DeleteTask(pb.DeleteTaskRequest(task_id=gone.id))
        before = await replay_all(stub, 3)
    server.restart()
    async with connect(server.address) as stub:
        after = await replay_all(stub, 3)
        fetched = (await stub.GetTask(pb.GetTaskRequest(task_id=kept.id))).task
        archived = (await stub.GetTask(pb.GetTaskRequest(task_id=gone.id))).task
    assert after == before
    assert fetched == kept
    assert archived.status == pb.TASK_STATUS_ARCHIVED


async def test_acknowledged_writes_survive_sigkill(server):
    async with connect(server.address) as stub:
        tasks = [await add(stub, f"task {i}") for i in range(20)]
        await stub.UpdateTask(
            pb.UpdateTaskRequest(task_id=tasks[0].id, status=pb.TASK_STATUS_COMPLETED)
        )
    server.kill()
    server.start()
    async with connect(server.address) as stub:
        listed = await stub.ListTasks(pb.ListTasksRequest())
        events = await replay_all(stub, 22)
    assert {t.id for t in listed.tasks} == {t.id for t in tasks}
    assert sequences(events) == list(range(1, 23))
    assert events[-1].task.status == pb.TASK_STATUS_COMPLETED


# --- shutdown -------------------------------------------------------------------


async def test_sigterm_ends_open_subscriptions_at_once_and_exits_0(project):
    # A grace period longer than `stop` waits: a server that waited it out
    # instead of ending its streams would be killed, and exit -9.
    server = ServerProcess(project, extra_args=("--grace", "600")).start()
    try:
        async with connect(server.address) as stub:
            await add(stub, "before the stop")
            calls = [subscribe(stub, after=0) for _ in range(3)]
            for call in calls:
                await read_events(call, 1)
            code = await asyncio.to_thread(server.stop)
            ends = await asyncio.gather(*(read_to_error(call) for call in calls))
    finally:
        server.stop()
    assert code == 0
    for events, error in ends:
        assert events == []
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert trailing(error, "rigger-last-sequence") == "1"


def test_health_reports_serving_for_the_server_and_the_rigger_service(shared_server):
    with grpc.insecure_channel(shared_server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "rigger.v1.RiggerService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=WAIT)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service


# --- discovery ------------------------------------------------------------------


def reflect(address: str, request: reflection_pb2.ServerReflectionRequest):
    with grpc.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        (reply,) = list(stub.ServerReflectionInfo(iter([request]), timeout=WAIT))
    return reply


def test_reflection_lists_the_rigger_and_health_services(shared_server):
    reply = reflect(shared_server.address, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in reply.list_services_response.service}
    assert {"rigger.v1.RiggerService", "grpc.health.v1.Health"} <= names


def test_reflection_describes_the_rigger_service(shared_server):
    reply = reflect(
        shared_server.address,
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="rigger.v1.RiggerService"),
    )
    assert reply.HasField("file_descriptor_response"), reply
    assert any(
        b"RiggerService" in proto for proto in reply.file_descriptor_response.file_descriptor_proto
    )


# --- the command line -----------------------------------------------------------


def test_init_creates_the_task_database(tmp_path):
    result = rig("init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / ".rigger" / "tasks.db").is_file()


async def test_init_again_keeps_existing_data(tmp_path):
    assert rig("init", cwd=tmp_path).returncode == 0
    server = ServerProcess(tmp_path).start()
    try:
        async with connect(server.address) as stub:
            task = await add(stub, "survives a second init")
        server.stop()
        again = rig("init", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        server.start()
        async with connect(server.address) as stub:
            fetched = (await stub.GetTask(pb.GetTaskRequest(task_id=task.id))).task
    finally:
        server.stop()
    assert fetched == task


def test_grpc_without_a_rigger_directory_exits_nonzero_and_says_to_run_rig_init(tmp_path):
    result = rig("grpc", "--port", "0", cwd=tmp_path)
    assert result.returncode != 0
    assert "rig init" in result.stderr


def test_grpc_uses_the_database_under_rigger_in_its_directory_by_default(tmp_path):
    assert rig("init", cwd=tmp_path).returncode == 0
    with running_rig("--port", "0", cwd=tmp_path) as (_, banner, port):
        assert f"Database: {tmp_path / '.rigger' / 'tasks.db'}" in banner
        assert serving(f"127.0.0.1:{port}")


def test_the_banner_names_protocol_address_database_and_broadcast(shared_server):
    banner = shared_server.banner
    assert "Protocol: gRPC over HTTP/2" in banner
    assert f"Address: [::1]:{shared_server.port}" in banner
    assert f"Database: {shared_server.db}" in banner
    assert "Broadcast: Enabled (1000 event buffer)" in banner


def test_the_banner_names_the_buffer_size(project):
    server = ServerProcess(project, extra_args=("--buffer", "5")).start()
    try:
        assert "Broadcast: Enabled (5 event buffer)" in server.banner
    finally:
        server.stop()


def test_the_ready_file_names_the_bound_addresses_and_port(shared_server):
    ready = json.loads(shared_server.ready_path.read_text())
    assert ready["port"] == shared_server.port
    assert ready["addresses"] == [f"[::1]:{shared_server.port}", f"127.0.0.1:{shared_server.port}"]
    assert ready["pid"] == shared_server.proc.pid


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_while_starting_stops_cleanly(tmp_path, workers):
    assert rig("init", cwd=tmp_path).returncode == 0
    proc = subprocess.Popen(
        [*RIG, "grpc", "--port", "0", "--workers", str(workers)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as a terminal gives it
    )
    # Opening the database is the first thing serving does.
    lock = tmp_path / ".rigger" / "tasks.db-writer.lock"
    lock.unlink()
    wait_until(
        lambda: lock.exists() or proc.poll() is not None,
        "the server to open its database",
        within=WAIT,
        every=0.005,
    )
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=3 * WAIT)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "error" not in err.lower()


@pytest.mark.parametrize("host", ["localhost", "[::1]", "127.0.0.1"])
def test_a_server_on_the_default_host_is_reached_by(shared_server, host):
    assert serving(f"{host}:{shared_server.port}")


def grpc_on_a_port_in_use(project: pathlib.Path) -> tuple[subprocess.CompletedProcess[str], int]:
    """`rig grpc --port P` in a fresh project while another process listens on P; and P."""
    assert rig("init", cwd=project).returncode == 0
    sockets, port = listening_on_both_loopbacks()
    try:
        result = rig("grpc", "--port", str(port), cwd=project)
    finally:
        for s in sockets:
            s.close()
    return result, port


def test_grpc_on_a_port_in_use_exits_nonzero_and_mentions_the_port_flag(tmp_path):
    result, _ = grpc_on_a_port_in_use(tmp_path)
    assert result.returncode != 0
    assert "--port" in result.stderr


def test_grpc_on_the_port_of_a_running_server_exits_nonzero(shared_server, tmp_path):
    assert rig("init", cwd=tmp_path).returncode == 0
    result = rig("grpc", "--port", str(shared_server.port), cwd=tmp_path)
    assert result.returncode != 0
    assert "--port" in result.stderr
    assert serving(shared_server.address)


@pytest.mark.parametrize(
    ("family", "loopback"),
    [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")],
    ids=["127.0.0.1", "::1"],
)
def test_grpc_on_a_port_taken_on_one_loopback_only_exits_nonzero(tmp_path, family, loopback):
    # The default host promises both [::1] and 127.0.0.1; if it can have only
    # one, clients of the other would reach whatever holds the port.
    assert rig("init", cwd=tmp_path).returncode == 0
    taken = socket.socket(family, socket.SOCK_STREAM)
    taken.bind((loopback, 0))
    taken.listen()
    port = taken.getsockname()[1]
    proc = subprocess.Popen(
        [*RIG, "grpc", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = ""
        for line in proc.stdout:  # ends when it exits, or stop at the banner if it serves
            banner += line
            if line.startswith("   Broadcast:"):
                break
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        _, stderr = proc.communicate(timeout=WAIT)
        taken.close()
    assert "Broadcast:" not in banner, f"started though {loopback}:{port} is taken:\n{banner}"
    assert proc.returncode != 0
    assert "--port" in stderr


def test_a_port_in_use_is_told_by_our_error_alone(tmp_path):
    # gRPC core logs its own bind failure ("add_port.cc:NN] Failed to add
    # port ...") straight to stderr; the user should read the line that
    # names the fix, not core's first.
    result, port = grpc_on_a_port_in_use(tmp_path)
    assert result.returncode == 1
    assert "add_port" not in result.stderr
    assert "Failed to add port" not in result.stderr
    assert f"error: cannot bind [::1]:{port}: Address already in use." in result.stderr
