"""Rotating the token file (SIGHUP) revokes the old tokens on open streams too.

A stream whose token the new file no longer accepts ends with UNAUTHENTICATED
("the token was revoked") and its last sequence in the `rigger-last-sequence`
trailer, so a client with a new token resumes without loss; a bidi stream
applies no update after that. Streams of tokens still accepted go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import signal

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from streams import WAIT, read_events, read_to_error, trailing

from testkit.serverproc import ServerProcess
from testkit.wait import wait_until_async

OLD = "old-token-to-be-revoked"
KEPT = "token-that-stays"
NEW = "token-after-rotation"
LAST_SEQUENCE = "rigger-last-sequence"


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
def token_file(project: pathlib.Path) -> pathlib.Path:
    path = project.parent / "tokens.txt"
    path.write_text(f"{OLD}\n{KEPT}\n")
    return path


def start(project, token_file, *extra: str) -> ServerProcess:
    return ServerProcess(
        project, extra_args=("--auth-token-file", str(token_file), *extra), token=KEPT
    ).start()


@pytest.fixture
def server(project, token_file):
    proc = start(project, token_file)
    yield proc
    proc.stop()


@pytest.fixture
async def stub(server):
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield rigger_pb2_grpc.RiggerServiceStub(channel)


async def add(stub, token: str, title: str = "t") -> pb.Task:
    reply = await stub.AddTask(pb.AddTaskRequest(title=title), metadata=bearer(token))
    return reply.task


async def rotate(server: ServerProcess, token_file: pathlib.Path, stub, *tokens: str) -> None:
    """Write the new token file, SIGHUP, and wait until the old token is refused."""
    await asyncio.to_thread(token_file.write_text, "".join(f"{token}\n" for token in tokens))
    server.proc.send_signal(signal.SIGHUP)

    async def refused() -> bool:
        try:
            await stub.ListTasks(pb.ListTasksRequest(), metadata=bearer(OLD))
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
            return True
        return False

    await wait_until_async(refused, "the rotation to take effect", within=WAIT)


def open_stream(stub, method: str, token: str, **fields):
    if method == "SubscribeToTaskEvents":
        request = pb.SubscribeToTaskEventsRequest(**fields)
        return stub.SubscribeToTaskEvents(request, metadata=bearer(token))
    request = pb.SubscribeToTaskEventBatchesRequest(**fields)
    return stub.SubscribeToTaskEventBatches(request, metadata=bearer(token))


async def sequences_of(call, method: str, count: int) -> list[int]:
    if method == "SubscribeToTaskEvents":
        return [event.sequence for event in await read_events(call, count)]
    seen: list[int] = []
    while len(seen) < count:
        batch = await asyncio.wait_for(call.read(), WAIT)
        assert batch is not grpc.aio.EOF
        seen.extend(event.sequence for event in batch.events)
    return seen


METHODS = ["SubscribeToTaskEvents", "SubscribeToTaskEventBatches"]


@pytest.mark.parametrize("method", METHODS)
async def test_a_subscription_of_a_revoked_token_ends_unauthenticated_with_its_last_sequence(
    server, token_file, stub, method
):
    await add(stub, KEPT, "first")
    call = open_stream(stub, method, OLD, after_sequence=0)
    assert await sequences_of(call, method, 1) == [1]
    await add(stub, KEPT, "second")
    assert await sequences_of(call, method, 1) == [2]
    await rotate(server, token_file, stub, KEPT, NEW)
    _, error = await read_to_error(call)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "the token was revoked" in error.details()
    assert trailing(error, LAST_SEQUENCE) == "2"
    # A client with a new token resumes from the trailer, without loss.
    await add(stub, NEW, "third")
    resumed = open_stream(stub, method, NEW, after_sequence=int(trailing(error, LAST_SEQUENCE)))
    assert await sequences_of(resumed, method, 1) == [3]
    resumed.cancel()


async def test_a_replaying_subscription_of_a_revoked_token_ends_too(server, token_file, stub):
    for i in range(30):
        await add(stub, KEPT, f"task {i} {'x' * 20_000}")
    # Replaying 600 kB: the rotation may land while pages are still being read.
    call = open_stream(stub, "SubscribeToTaskEvents", OLD, after_sequence=0)
    await asyncio.wait_for(call.initial_metadata(), WAIT)
    await rotate(server, token_file, stub, KEPT)
    events, error = await read_to_error(call)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert trailing(error, LAST_SEQUENCE) == str(len(events))


async def test_a_subscription_of_a_token_still_accepted_keeps_flowing(server, token_file, stub):
    call = open_stream(stub, "SubscribeToTaskEvents", KEPT, after_sequence=0)
    await add(stub, KEPT, "before")
    assert await sequences_of(call, "SubscribeToTaskEvents", 1) == [1]
    await rotate(server, token_file, stub, KEPT)
    await add(stub, KEPT, "after")
    assert await sequences_of(call, "SubscribeToTaskEvents", 1) == [2]
    call.cancel()


async def test_a_bidi_stream_of_a_revoked_token_ends_and_applies_no_later_update(
    server, token_file, stub
):
    task = await add(stub, KEPT, "to be changed")
    call = stub.TaskEventStream(metadata=bearer(OLD))
    await call.write(pb.TaskEventStreamRequest(subscribe=pb.SubscribeToTaskEventsRequest()))
    await asyncio.wait_for(call.initial_metadata(), WAIT)
    await rotate(server, token_file, stub, KEPT)
    update = pb.TaskUpdate(task_id=task.id, assignee="mallory")
    # The server may have ended the stream already: then nothing more is sent.
    with contextlib.suppress(grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
        await call.write(pb.TaskEventStreamRequest(update=update))
    _, error = await read_to_error(call)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "the token was revoked" in error.details()
    assert trailing(error, LAST_SEQUENCE) == "1"
    got = await stub.GetTask(pb.GetTaskRequest(task_id=task.id), metadata=bearer(KEPT))
    assert not got.task.HasField("assignee")
    assert got.task.version == 1


async def test_a_health_watch_of_a_revoked_token_ends_unauthenticated(server, token_file, stub):
    async with grpc.aio.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(), metadata=bearer(OLD))
        first = await asyncio.wait_for(watch.read(), WAIT)
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        await rotate(server, token_file, stub, KEPT)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(watch.read(), WAIT)
    assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "the token was revoked" in ended.value.details()


async def test_every_worker_ends_the_streams_of_a_revoked_token(project, token_file):
    proc = start(project, token_file, "--workers", "2")
    try:
        # One connection per channel: the kernel spreads them over the workers.
        channels = [grpc.aio.insecure_channel(proc.address) for _ in range(8)]
        stubs = [rigger_pb2_grpc.RiggerServiceStub(channel) for channel in channels]
        calls = [open_stream(stub, "SubscribeToTaskEvents", OLD) for stub in stubs]
        for call in calls:
            await asyncio.wait_for(call.initial_metadata(), WAIT)
        await rotate(proc, token_file, stubs[0], KEPT)
        for call in calls:
            _, error = await read_to_error(call)
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        for channel in channels:
            await channel.close()
    finally:
        assert proc.stop() == 0


async def test_a_reflection_stream_of_a_revoked_token_ends_unauthenticated(
    server, token_file, stub
):
    async with grpc.aio.insecure_channel(server.address) as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = reflection.ServerReflectionInfo(metadata=bearer(OLD))
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        listed = await asyncio.wait_for(call.read(), WAIT)
        assert listed.list_services_response.service
        await rotate(server, token_file, stub, KEPT)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(call.read(), WAIT)
    assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "the token was revoked" in ended.value.details()
