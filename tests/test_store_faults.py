"""Storage trouble while serving: each gets a clear status, never UNKNOWN or SQLite's own words.

The database deleted or replaced under a running server, another process
holding the write lock, a full disk, a read-only database. Nothing
acknowledged may be lost, and the server must stop and start cleanly.

The full-disk tests mount a small tmpfs on the database directory, which
needs root (CAP_SYS_ADMIN); where mounting is impossible they are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import pathlib
import shutil
import sqlite3
import subprocess

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from streams import WAIT, add, read_to_error, subscribe, trailing

from testkit.serverproc import ServerProcess, rig
from testkit.wait import wait_until_async

SQLITE_WORDS = ("sqlite", "unable to open", "database is locked", "operationalerror")


def assert_no_internal_text(details: str) -> None:
    for words in SQLITE_WORDS:
        assert words not in details.lower(), details


async def health_status(channel: grpc.aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    return reply.status


async def code_of(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


# --- the database deleted or replaced while serving --------------------------


async def test_a_subscription_after_the_database_directory_is_deleted_is_unavailable(server, stub):
    shutil.rmtree(server.root / ".rigger")
    _, error = await read_to_error(subscribe(stub, after=0))
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error
    assert "deleted or replaced" in error.details()
    assert_no_internal_text(error.details())


async def test_a_write_after_the_database_directory_is_deleted_is_refused(server, stub):
    await add(stub, "before")
    shutil.rmtree(server.root / ".rigger")
    error = await code_of(stub.AddTask(pb.AddTaskRequest(title="after")))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "deleted or replaced" in error.details()


async def test_a_write_after_the_database_file_is_replaced_is_refused(server, stub):
    await add(stub, "before")
    copy = server.db.with_name("copy.db")
    shutil.copyfile(server.db, copy)
    copy.replace(server.db)
    error = await code_of(stub.AddTask(pb.AddTaskRequest(title="after")))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "deleted or replaced" in error.details()


async def test_health_says_not_serving_once_the_database_is_found_deleted(server, stub):
    async with grpc.aio.insecure_channel(server.address) as channel:
        assert await health_status(channel) == health_pb2.HealthCheckResponse.SERVING
        shutil.rmtree(server.root / ".rigger")
        await code_of(stub.AddTask(pb.AddTaskRequest(title="after")))

        async def not_serving() -> bool:
            return await health_status(channel) == health_pb2.HealthCheckResponse.NOT_SERVING

        await wait_until_async(not_serving, "health to turn NOT_SERVING", within=WAIT)


# --- another process holds the write lock -----------------------------------


async def test_a_stream_update_while_another_process_holds_the_write_lock_is_unavailable(
    server, stub
):
    task = await add(stub)
    holder = sqlite3.connect(server.db, isolation_level=None, timeout=0)
    holder.execute("BEGIN IMMEDIATE")
    try:
        call = stub.TaskEventStream()
        await call.write(pb.TaskEventStreamRequest(subscribe=pb.SubscribeToTaskEventsRequest()))
        await asyncio.wait_for(call.initial_metadata(), WAIT)
        await call.write(
            pb.TaskEventStreamRequest(
                update=pb.TaskUpdate(task_id=task.id, status=pb.TASK_STATUS_IN_PROGRESS)
            )
        )
        # The server waits out SQLite's busy timeout (5 s) first.
        _, error = await read_to_error(call, within=30)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error
    assert "another process holds the database's write lock" in error.details()
    assert_no_internal_text(error.details())
    assert trailing(error, "rigger-last-sequence") == "1"


# --- a full disk --------------------------------------------------------------


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def small_disk(project: pathlib.Path):
    """A 4 MiB tmpfs mounted on the project's .rigger/ directory."""
    directory = project / ".rigger"
    directory.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root (CAP_SYS_ADMIN)")
    mounted = _mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(directory))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield directory
    subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(directory: pathlib.Path) -> None:
    """Write a file until the file system has no byte left."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        chunk = b"\0" * 65536
        while True:
            try:
                os.write(fd, chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    return
                chunk = chunk[: len(chunk) // 2]
    finally:
        os.close(fd)


@pytest.fixture
def full_disk_server(project, small_disk):
    """A server whose database directory is on a small tmpfs, stopped after the test."""
    proc = ServerProcess(project).start()
    yield proc
    proc.stop()


async def add_on(server: ServerProcess, title: str) -> pb.Task:
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        return (await stub.AddTask(pb.AddTaskRequest(title=title), timeout=WAIT)).task


async def refused_on(server: ServerProcess, title: str) -> grpc.aio.AioRpcError:
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        return await code_of(stub.AddTask(pb.AddTaskRequest(title=title), timeout=WAIT))


async def titles_on(server: ServerProcess) -> list[str]:
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        listed = await stub.ListTasks(pb.ListTasksRequest(), timeout=WAIT)
    return sorted(task.title for task in listed.tasks)


async def test_a_write_on_a_full_disk_is_resource_exhausted_disk_full(full_disk_server):
    await add_on(full_disk_server, "before")
    fill(full_disk_server.db.parent)
    error = await refused_on(full_disk_server, "x" * 100_000)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "disk full" in error.details()
    assert_no_internal_text(error.details())
    assert await titles_on(full_disk_server) == ["before"]


async def test_a_graceful_stop_on_a_full_disk_exits_0_without_a_traceback(full_disk_server):
    await add_on(full_disk_server, "before")
    fill(full_disk_server.db.parent)
    await refused_on(full_disk_server, "x" * 100_000)
    assert full_disk_server.stop() == 0
    assert "Traceback" not in full_disk_server.read_log()


async def test_a_server_restarts_on_a_full_disk_and_keeps_every_acknowledged_write(
    full_disk_server,
):
    await add_on(full_disk_server, "first")
    await add_on(full_disk_server, "second")
    fill(full_disk_server.db.parent)
    await refused_on(full_disk_server, "x" * 100_000)
    full_disk_server.restart()
    assert await titles_on(full_disk_server) == ["first", "second"]
    error = await refused_on(full_disk_server, "x" * 100_000)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Traceback" not in full_disk_server.read_log()


def test_a_start_that_would_need_space_on_a_full_disk_fails_with_a_clear_error(project, small_disk):
    # Stopped cleanly, SQLite removes its shared-memory file, and opening the
    # database again must create it (32 KiB): on a disk with no byte left that
    # is impossible, and the server says so.
    assert rig("init", cwd=project).returncode == 0
    fill(small_disk)
    result = rig("grpc", "--port", "0", cwd=project)
    assert result.returncode == 2, result.stderr
    assert "disk full" in result.stderr
    assert "Traceback" not in result.stderr


# --- a read-only database -----------------------------------------------------


@contextlib.contextmanager
def read_only(directory: pathlib.Path):
    """Make `directory` and its files read-only for this process, root included."""
    if os.geteuid() == 0:
        if _mount("--bind", str(directory), str(directory)).returncode != 0:
            pytest.skip("cannot bind-mount here to make a directory read-only for root")
        try:
            remounted = _mount("-o", "remount,bind,ro", str(directory))
            if remounted.returncode != 0:
                pytest.skip(f"cannot remount read-only here: {remounted.stderr.strip()}")
            yield
        finally:
            subprocess.run(["umount", "-l", str(directory)], check=False)
        return
    modes = {path: path.stat().st_mode for path in (directory, *directory.iterdir())}
    for path in modes:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        yield
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


def test_starting_on_a_read_only_database_fails_with_a_clear_error(project):
    assert rig("init", cwd=project).returncode == 0
    with read_only(project / ".rigger"):
        result = rig("grpc", "--port", "0", cwd=project)
    assert result.returncode == 2, result.stderr
    assert "read-only" in result.stderr
    assert "Traceback" not in result.stderr
