"""`rig grpc --metrics-port`: Prometheus metrics on /metrics, through a real server.

The listed series are there and move as the server works; label values come
only from fixed sets, so no request creates a series; the endpoint is on
loopback by default, asks for the gRPC token when there is one, and abuse of
it (no token, huge headers, slow or many clients) never stalls gRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import grpc
import psutil
import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from rigger_server.limits import METRICS_CONNECTION_SECONDS, METRICS_MAX_CONNECTIONS
from scrape import fetch, metrics_port, scrape, scrape_until, series_named, value
from streams import WAIT, add, read_events, read_to_error, subscribe
from worker_processes import worker_pids

from testkit.serverproc import ServerProcess, rig
from testkit.wait import wait_until, wait_until_async

RIGGER = "rigger.v1.RiggerService"
TOKEN = "metrics-token"
NEW_TOKEN = "metrics-token-after-rotation"
PRD = (
    "# Shop\n\nA shop.\n\n## Objectives\n\n- Take payments\n- Send receipts\n"
    "- Track orders\n- Refund orders\n- Email customers\n"
)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("metrics") / "project"
    root.mkdir()
    (root / "prd.md").write_text(PRD)
    proc = ServerProcess(root, extra_args=("--metrics-port", "0")).start()
    yield proc
    proc.stop()


@pytest.fixture
async def stub(observed: ServerProcess) -> AsyncIterator[rigger_pb2_grpc.RiggerServiceStub]:
    async with grpc.aio.insecure_channel(observed.address) as channel:
        yield rigger_pb2_grpc.RiggerServiceStub(channel)


async def scraped(port: int, token: str | None = None) -> dict:
    return await asyncio.to_thread(scrape, port, token)


# --- the series ------------------------------------------------------------------


async def test_calls_are_counted_by_method_and_code_and_timed(observed, stub):
    port = metrics_port(observed)
    before = await scraped(port)
    await add(stub)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetTask(pb.GetTaskRequest(task_id=str(uuid.uuid4())))
    calls = "rigger_grpc_calls_total"
    ended = [
        {"service": RIGGER, "method": method, "code": code}
        for method, code in (("AddTask", "OK"), ("GetTask", "NOT_FOUND"))
    ]
    # An aborted call's status goes out before its handler has quite ended.
    after = await asyncio.to_thread(
        scrape_until,
        port,
        lambda s: all(
            value(s, calls, **labels) > value(before, calls, **labels) for labels in ended
        ),
    )
    for labels in ended:
        assert value(after, calls, **labels) == value(before, calls, **labels) + 1
    timed = "rigger_grpc_call_duration_seconds_count"
    assert value(after, timed, service=RIGGER, method="AddTask") >= 1
    assert value(after, "rigger_grpc_call_duration_seconds_bucket", service=RIGGER,
                 method="AddTask", le="+Inf") >= 1  # fmt: skip


async def test_commits_deliveries_and_open_streams_move_under_load(observed, stub):
    port = metrics_port(observed)
    before = await scraped(port)
    head = (await add(stub)).version  # a write first, so both streams start after it
    plain = subscribe(stub)
    batched = stub.SubscribeToTaskEventBatches(pb.SubscribeToTaskEventBatchesRequest())
    await plain.initial_metadata()
    await batched.initial_metadata()
    assert head
    opened = await asyncio.to_thread(
        scrape_until,
        port,
        lambda s: (
            value(s, "rigger_streams_open", kind="plain") >= 1
            and value(s, "rigger_streams_open", kind="batched") >= 1
        ),
    )
    assert opened
    writes = 20
    for index in range(writes):
        await add(stub, f"load {index}")
    await read_events(plain, writes)
    seen = 0
    while seen < writes:
        message = await asyncio.wait_for(batched.read(), WAIT)
        seen += len(message.events)
    after = await asyncio.to_thread(
        scrape_until,
        port,
        lambda s: (
            value(s, "rigger_log_head_sequence")
            >= value(before, "rigger_log_head_sequence") + writes + 1
        ),
    )
    assert (
        value(after, "rigger_events_committed_total")
        >= value(before, "rigger_events_committed_total") + writes + 1
    )
    for kind in ("plain", "batched"):
        delivered = value(after, "rigger_events_delivered_total", kind=kind)
        assert delivered >= value(before, "rigger_events_delivered_total", kind=kind) + writes
        assert value(after, "rigger_messages_delivered_total", kind=kind) >= 1
    assert value(after, "rigger_commit_duration_seconds_count") > value(
        before, "rigger_commit_duration_seconds_count"
    )
    for series in ("rigger_subscriber_queue_depth_max", "rigger_batch_turns_waiting"):
        assert (series, ()) in after
    plain.cancel()
    batched.cancel()
    await asyncio.to_thread(
        scrape_until,
        port,
        lambda s: (
            value(s, "rigger_streams_open", kind="plain")
            < value(after, "rigger_streams_open", kind="plain")
        ),
    )


async def test_planner_steps_are_counted_by_planner_step_and_outcome(observed, stub):
    port = metrics_port(observed)
    before = await scraped(port)
    task = await add(stub, "Write the onboarding guide")
    await stub.OrchestrateTask(pb.OrchestrateTaskRequest(task_id=task.id))
    after = await scraped(port)
    counted = [
        series
        for series in series_named(after, "rigger_planner_calls_total")
        if dict(series[1])["planner"] == "offline" and dict(series[1])["outcome"] == "ok"
    ]
    assert sum(after[s] for s in counted) > sum(before.get(s, 0) for s in counted)
    assert value(after, "rigger_planner_ready", planner="offline") == 1


async def test_unknown_methods_and_hostile_paths_create_no_series(observed):
    port = metrics_port(observed)
    before = await scraped(port)
    async with grpc.aio.insecure_channel(observed.address) as channel:
        for index in range(50):
            path = f"/evil.{uuid.uuid4().hex}.Service/{'M' * (index * 40)}\u00e9{index}"
            call = channel.unary_unary(path)
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await call(b"\x00" * index)
            assert failed.value.code() == grpc.StatusCode.UNIMPLEMENTED
        # A real method with hostile metadata and bytes: still one of the fixed labels.
        broken = channel.unary_unary(f"/{RIGGER}/AddTask")
        with pytest.raises(grpc.aio.AioRpcError):
            await broken(b"\xff\xff\xff", metadata=(("x-label", "code=OK"),))
    after = await scraped(port)
    calls = "rigger_grpc_calls_total"
    unknown = {"service": "unknown", "method": "unknown", "code": "UNIMPLEMENTED"}
    assert value(after, calls, **unknown) == value(before, calls, **unknown) + 50
    new = set(after) - set(before)
    assert all("evil" not in str(series) for series in after)
    for name, labels in new:
        values = dict(labels)
        assert values.get("service") in (None, "unknown", RIGGER), (name, labels)
    assert len(series_named(after, calls)) <= len(series_named(before, calls)) + 2


async def test_the_endpoint_serves_only_metrics_on_loopback_by_default(observed):
    port = metrics_port(observed)
    listening = [
        c.laddr
        for c in psutil.Process(observed.proc.pid).net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    ]
    assert [address.ip for address in listening] == ["127.0.0.1"]
    status, _ = await asyncio.to_thread(fetch, port, None, "/other")
    assert status == 404
    assert "Metrics: http://127.0.0.1:" in observed.banner


# --- abuse -----------------------------------------------------------------------


async def assert_grpc_answers(stub) -> None:
    """A write still answers promptly while the endpoint is abused."""
    await asyncio.wait_for(add(stub, "still serving"), WAIT)


async def test_slow_clients_hold_no_slot_for_long_and_never_stall_grpc(observed, stub):
    port = metrics_port(observed)
    slow = []
    try:
        for _ in range(METRICS_MAX_CONNECTIONS + 8):
            sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the end
            slow.append(sock)
        await assert_grpc_answers(stub)
        # Every slot is taken by a slow client until its deadline cuts it.
        started = time.monotonic()
        await asyncio.to_thread(
            scrape_until, port, lambda s: True, None, METRICS_CONNECTION_SECONDS * 3
        )
        assert time.monotonic() - started < METRICS_CONNECTION_SECONDS * 3
        for sock in slow:
            sock.settimeout(WAIT)
            # Cut by the server: end of file (or a reset), never a hang.
            with contextlib.suppress(ConnectionError):
                while sock.recv(4096):
                    pass
    finally:
        for sock in slow:
            sock.close()


async def test_huge_headers_are_refused_and_grpc_goes_on(observed, stub):
    port = metrics_port(observed)

    def send_huge() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            with contextlib.suppress(ConnectionError):
                sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
            with contextlib.suppress(ConnectionError):
                return sock.recv(4096)
            return b""

    answer = await asyncio.to_thread(send_huge)
    assert answer == b"" or answer.split(b" ")[1][:1] == b"4"
    await assert_grpc_answers(stub)
    assert (await asyncio.to_thread(fetch, port))[0] == 200


async def test_many_connections_at_once_are_turned_away_not_queued(observed, stub):
    port = metrics_port(observed)
    opened = [socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(200)]
    try:
        await assert_grpc_answers(stub)
    finally:
        for sock in opened:
            sock.close()
    await asyncio.to_thread(scrape_until, port, lambda s: True)


# --- a token ---------------------------------------------------------------------


@pytest.fixture
def token_file(project):
    path = project.parent / "tokens.txt"
    path.write_text(f"{TOKEN}\n")
    return path


def test_with_a_token_file_the_endpoint_asks_for_the_same_token_and_follows_rotation(
    project, token_file
):
    server = ServerProcess(
        project,
        extra_args=("--auth-token-file", str(token_file), "--metrics-port", "0"),
        token=TOKEN,
    ).start()
    try:
        port = metrics_port(server)
        assert fetch(port)[0] == 401
        assert fetch(port, "wrong")[0] == 401
        assert fetch(port, TOKEN)[0] == 200
        token_file.write_text(f"{NEW_TOKEN}\n")
        server.proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: fetch(port, TOKEN)[0] == 401,
            "the rotation to reach /metrics",
            within=WAIT,
            every=0.05,
        )
        assert fetch(port, NEW_TOKEN)[0] == 200
    finally:
        server.stop()


async def test_a_subscriber_ended_for_a_revoked_token_is_counted(project, token_file):
    token_file.write_text(f"{TOKEN}\n{NEW_TOKEN}\n")
    server = ServerProcess(
        project,
        extra_args=("--auth-token-file", str(token_file), "--metrics-port", "0"),
        token=NEW_TOKEN,
    ).start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = rigger_pb2_grpc.RiggerServiceStub(channel)
            call = stub.SubscribeToTaskEvents(
                pb.SubscribeToTaskEventsRequest(), metadata=bearer(TOKEN)
            )
            await call.initial_metadata()
            token_file.write_text(f"{NEW_TOKEN}\n")
            server.proc.send_signal(signal.SIGHUP)
            _, error = await read_to_error(call)
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        samples = await asyncio.to_thread(scrape, metrics_port(server), NEW_TOKEN)
        assert value(samples, "rigger_subscribers_ended_total", reason="token_revoked") == 1
    finally:
        server.stop()


async def test_a_subscriber_ended_for_lagging_is_counted(project):
    (project / "prd.md").write_text(PRD)
    server = ServerProcess(project, extra_args=("--metrics-port", "0", "--buffer", "1")).start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = rigger_pb2_grpc.RiggerServiceStub(channel)
            call = subscribe(stub)
            await call.initial_metadata()
            # One commit of many events: they reach the queue of one at once.
            parsed = await stub.ParsePRD(pb.ParsePRDRequest(prd_file_path="prd.md"))
            await stub.GenerateTasksFromPRD(pb.GenerateTasksFromPRDRequest(prd_id=parsed.prd_id))
            _, error = await read_to_error(call)
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        samples = await asyncio.to_thread(scrape, metrics_port(server))
        assert value(samples, "rigger_subscribers_ended_total", reason="lagging") == 1
    finally:
        server.stop()


# --- workers and start-up --------------------------------------------------------


async def test_with_workers_one_endpoint_serves_the_sum_of_every_worker(project):
    server = ServerProcess(project, extra_args=("--workers", "2", "--metrics-port", "0")).start()
    try:
        workers = worker_pids(server)
        assert len(workers) == 2
        served_by: set[int] = set()
        writes = 0

        async def spread() -> bool:
            """One write on a connection of its own; True once both workers took some."""
            nonlocal writes
            async with grpc.aio.insecure_channel(server.address) as channel:
                stub = rigger_pb2_grpc.RiggerServiceStub(channel)
                await add(stub, f"write {writes}")
                writes += 1
                served_by.update(
                    pid
                    for pid in workers
                    if any(
                        c.status == psutil.CONN_ESTABLISHED
                        for c in psutil.Process(pid).net_connections("tcp")
                        if c.laddr.port == server.port
                    )
                )
            return len(served_by) == 2 and writes >= 20

        await wait_until_async(spread, "the kernel to spread connections", within=60)
        port = metrics_port(server)
        samples = await asyncio.to_thread(
            scrape_until,
            port,
            lambda s: value(s, "rigger_log_head_sequence") == writes,
        )
        calls = value(
            samples, "rigger_grpc_calls_total", service=RIGGER, method="AddTask", code="OK"
        )
        assert calls == writes
        assert value(samples, "rigger_events_committed_total") == writes
    finally:
        assert server.stop() == 0


def test_a_taken_metrics_port_fails_the_start_naming_the_flag(project):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert rig("init", cwd=project).returncode == 0
        result = rig("grpc", "--port", "0", "--metrics-port", str(port), cwd=project)
    assert result.returncode == 1
    assert f"--metrics-port: cannot bind 127.0.0.1:{port}" in result.stderr


def test_a_metrics_host_that_is_not_loopback_without_a_token_is_warned_about(project):
    server = ServerProcess(
        project, extra_args=("--metrics-port", "0", "--metrics-host", "0.0.0.0")
    ).start()
    try:
        assert "the metrics are open to anyone" in server.read_log()
    finally:
        server.stop()


def test_the_supervisor_removes_the_workers_metric_files_when_it_stops(project, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    server = ServerProcess(project, extra_args=("--workers", "2", "--metrics-port", "0"))
    environ = dict(os.environ)
    os.environ["TMPDIR"] = str(scratch)
    try:
        server.start()
    finally:
        os.environ.clear()
        os.environ.update(environ)
    try:
        assert [p.name[:15] for p in scratch.iterdir()] == ["rigger-metrics-"]
        assert any(next(scratch.iterdir()).iterdir())  # the workers' files
    finally:
        assert server.stop() == 0
    assert list(scratch.iterdir()) == []
