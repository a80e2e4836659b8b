"""A real Prometheus scrapes `rig grpc --metrics-port` under load; every listed series moves.

    python tests/prometheus/check.py        # `nox -s metrics`

It starts `rig grpc` with a token file and a small --buffer, and Prometheus
(Debian's `prometheus` binary, a private config and data directory, a free
loopback port) scraping it every second with the token. It then drives load
for a while: writes, a plain and a batched subscriber that read, a
generation that commits more events at once than --buffer (so subscribers
lag and are ended), a subscriber whose token is revoked, planner calls and a
failing call. Finally it asks Prometheus's HTTP query API about
each series and checks that it arrived and moved. Exit status 0 when all did.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from typing import Any

import grpc
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc

from testkit.serverproc import ServerProcess
from testkit.wait import wait_until

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent

TOKEN = "prometheus-scrapes-with-this"
REVOKED = "revoked-during-the-run"
LOAD_SECONDS = 12.0
MAX_WRITES = 5000
# Prometheus scrapes every second: the load lasts at least this long, so several
# scrapes see it under way however fast the machine writes.
MIN_LOAD_SECONDS = 5.0
READY_SECONDS = 60.0
# Scrapes taken once the load ended, before the checks: the last state of everything.
FINAL_SCRAPES = 3
# Events queued per subscriber before it is ended as lagging (--buffer).
BUFFER = 50
# Each check: what it shows, a PromQL expression, and the least value it must reach.
CHECKS: list[tuple[str, str, float]] = [
    ("calls by method and code", 'rigger_grpc_calls_total{method="AddTask",code="OK"}', 1),
    ("failed calls by code", 'rigger_grpc_calls_total{method="GetTask",code="NOT_FOUND"}', 1),
    ("call durations", 'rigger_grpc_call_duration_seconds_count{method="AddTask"}', 1),
    ("call duration buckets", 'rigger_grpc_call_duration_seconds_bucket{le="+Inf"}', 1),
    ("open plain streams", 'rigger_streams_open{kind="plain"}', 1),
    ("open batched streams", 'rigger_streams_open{kind="batched"}', 1),
    ("events committed", "rigger_events_committed_total", 1),
    ("plain deliveries", 'rigger_events_delivered_total{kind="plain"}', 1),
    ("batched deliveries", 'rigger_events_delivered_total{kind="batched"}', 1),
    ("batch messages", 'rigger_messages_delivered_total{kind="batched"}', 1),
    ("ended: lagging", 'rigger_subscribers_ended_total{reason="lagging"}', 1),
    ("ended: token revoked", 'rigger_subscribers_ended_total{reason="token_revoked"}', 1),
    ("commit durations", "rigger_commit_duration_seconds_count", 1),
    ("log head", "rigger_log_head_sequence", 1),
    ("deepest queue", "rigger_subscriber_queue_depth_max", 0),
    ("turns waiting", "rigger_batch_turns_waiting", 0),
    ("planner calls", 'rigger_planner_calls_total{planner="offline",outcome="ok"}', 1),
    ("planner ready", 'rigger_planner_ready{planner="offline"}', 1),
]


class Failed(Exception):
    """The check failed; the message says what."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def start_prometheus(work: pathlib.Path, target: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not pathlib.Path(binary).exists():
        raise Failed("no prometheus binary: `apt-get install prometheus` (Debian's package)")
    (work / "token").write_text(TOKEN)
    config = work / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: rigger\n"
        "    authorization:\n"
        f"      credentials_file: {work / 'token'}\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    address = f"127.0.0.1:{free_port()}"
    log = (work / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address={address}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def ready() -> bool:
        if process.poll() is not None:
            raise Failed(f"prometheus exited: {(work / 'prometheus.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://{address}/-/ready", timeout=2) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    try:
        wait_until(ready, "prometheus to get ready", within=READY_SECONDS, every=0.2)
    except TimeoutError:
        raise Failed("prometheus did not get ready") from None
    return process, address


def wait_for_scrapes(prometheus: str, after: float) -> None:
    """Return once Prometheus has scraped the server FINAL_SCRAPES times since `after`."""
    stamps: set[float] = set()

    def scraped() -> bool:
        for sample in query(prometheus, 'timestamp(up{job="rigger"})'):
            stamp = float(sample["value"][1])
            if stamp > after:
                stamps.add(stamp)
        return len(stamps) >= FINAL_SCRAPES

    try:
        wait_until(
            scraped, f"{FINAL_SCRAPES} scrapes after the load", within=READY_SECONDS, every=0.2
        )
    except TimeoutError:
        raise Failed(f"Prometheus scraped {len(stamps)} times after the load") from None


def wait_for_first_scrape(prometheus: str) -> None:
    """Return once Prometheus has scraped the server: load before that goes unseen."""

    def up() -> bool:
        return any(float(r["value"][1]) == 1 for r in query(prometheus, 'up{job="rigger"}'))

    try:
        wait_until(up, "Prometheus's first scrape", within=READY_SECONDS, every=0.2)
    except TimeoutError:
        raise Failed("Prometheus cannot scrape the server") from None


def query(prometheus: str, expression: str) -> list[dict[str, Any]]:
    url = f"http://{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    with urllib.request.urlopen(url, timeout=10) as reply:
        body = json.loads(reply.read())
    if body.get("status") != "success":
        raise Failed(f"query {expression!r} failed: {body}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def read_forever(stub: Any, batched: bool, stop: asyncio.Event) -> None:
    """A subscriber that reads everything, resubscribing if it is ever ended."""
    while not stop.is_set():
        if batched:
            call = stub.SubscribeToTaskEventBatches(
                pb.SubscribeToTaskEventBatchesRequest(), metadata=bearer(TOKEN)
            )
        else:
            call = stub.SubscribeToTaskEvents(
                pb.SubscribeToTaskEventsRequest(), metadata=bearer(TOKEN)
            )
        try:
            while not stop.is_set():
                message = await asyncio.wait_for(call.read(), 1.0)
                if message is grpc.aio.EOF:
                    break
        except (TimeoutError, grpc.aio.AioRpcError):
            pass
        finally:
            call.cancel()


async def load(server: ServerProcess, tokens: pathlib.Path) -> int:
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        stop = asyncio.Event()
        readers = [asyncio.ensure_future(read_forever(stub, b, stop)) for b in (False, True)]
        task = await stub.AddTask(
            pb.AddTaskRequest(title="Plan the launch"), metadata=bearer(TOKEN)
        )
        await stub.OrchestrateTask(
            pb.OrchestrateTaskRequest(task_id=task.task.id), metadata=bearer(TOKEN)
        )
        # One commit of more events than --buffer: every subscriber then queued
        # lags behind at once, and the server ends it (the readers come back).
        parsed = await stub.ParsePRD(
            pb.ParsePRDRequest(prd_file_path="prd.md"), metadata=bearer(TOKEN)
        )
        await stub.GenerateTasksFromPRD(
            pb.GenerateTasksFromPRDRequest(prd_id=parsed.prd_id), metadata=bearer(TOKEN)
        )
        with contextlib.suppress(grpc.aio.AioRpcError):
            await stub.GetTask(pb.GetTaskRequest(task_id=str(uuid.uuid4())), metadata=bearer(TOKEN))
        # Its token is revoked halfway through the load: the server ends it. It
        # reads as it goes, so it cannot be ended as lagging first.
        doomed = stub.SubscribeToTaskEvents(
            pb.SubscribeToTaskEventsRequest(), metadata=bearer(REVOKED)
        )
        await doomed.initial_metadata()
        ending = asyncio.ensure_future(read_until_ended(doomed))
        writes = 0
        ends = time.monotonic() + LOAD_SECONDS
        revoked = False
        started = time.monotonic()
        while time.monotonic() < ends and writes < MAX_WRITES:
            # Paced so that MAX_WRITES take at least MIN_LOAD_SECONDS.
            ahead = started + MIN_LOAD_SECONDS * writes / MAX_WRITES - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            await asyncio.gather(
                *(
                    stub.AddTask(
                        pb.AddTaskRequest(title=f"load {writes + i}"), metadata=bearer(TOKEN)
                    )
                    for i in range(8)
                )
            )
            writes += 8
            # Halfway by time or by count, whichever the machine reaches first.
            halfway = time.monotonic() > ends - LOAD_SECONDS / 2 or writes >= MAX_WRITES / 2
            if not revoked and halfway:
                await revoke(server, tokens)
                revoked = True
        if not revoked:
            await revoke(server, tokens)
        code = await asyncio.wait_for(ending, READY_SECONDS)
        if code != grpc.StatusCode.UNAUTHENTICATED:
            raise Failed(f"the revoked subscriber ended with {code}, not UNAUTHENTICATED")
        stop.set()
        await asyncio.gather(*readers, return_exceptions=True)
        return writes


async def revoke(server: ServerProcess, tokens: pathlib.Path) -> None:
    """Drop REVOKED from the token file and tell the server to reload it."""
    await asyncio.to_thread(tokens.write_text, f"{TOKEN}\n")
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)


async def read_until_ended(call: Any) -> grpc.StatusCode:
    """Read a stream until the server ends it; the status code it ended with."""
    try:
        while await call.read() is not grpc.aio.EOF:
            pass
    except grpc.aio.AioRpcError as ended:
        return ended.code()
    return grpc.StatusCode.OK


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="rigger-prometheus-") as scratch:
        work = pathlib.Path(scratch)
        project = work / "project"
        project.mkdir()
        objectives = "".join(f"- Objective number {n}\n" for n in range(BUFFER + 20))
        (project / "prd.md").write_text(f"# Launch\n\nThe launch.\n\n## Objectives\n\n{objectives}")
        tokens = work / "tokens.txt"
        tokens.write_text(f"{TOKEN}\n{REVOKED}\n")
        server = ServerProcess(
            project,
            extra_args=(
                "--metrics-port",
                "0",
                "--auth-token-file",
                str(tokens),
                "--buffer",
                str(BUFFER),
            ),
            token=TOKEN,
        ).start()
        prometheus: subprocess.Popen[bytes] | None = None
        try:
            metrics_port = json.loads(server.ready_path.read_text())["metrics_port"]
            prometheus, address = start_prometheus(work, f"127.0.0.1:{metrics_port}")
            wait_for_first_scrape(address)
            writes = asyncio.run(load(server, tokens))
            print(f"load: {writes} writes in at most {LOAD_SECONDS:.0f} s")
            wait_for_scrapes(address, after=time.time())
            failures = 0
            up = query(address, 'up{job="rigger"}')
            if not up or float(up[0]["value"][1]) != 1:
                raise Failed(f"Prometheus cannot scrape the server: {up}")
            for what, expression, least in CHECKS:
                result = query(address, f"max_over_time(({expression})[10m:1s])")
                seen = max((float(r["value"][1]) for r in result), default=None)
                ok = seen is not None and seen >= least
                failures += not ok
                print(f"{'ok  ' if ok else 'FAIL'} {what:24} {expression} = {seen}")
            moved = query(
                address,
                "max_over_time(rigger_log_head_sequence[10m]) - "
                "min_over_time(rigger_log_head_sequence[10m])",
            )
            if not moved or float(moved[0]["value"][1]) <= 0:
                print("FAIL the log head never moved between scrapes")
                failures += 1
            print(f"{len(CHECKS) + 1 - failures} passed, {failures} failed")
            return 0 if failures == 0 else 1
        finally:
            if prometheus is not None:
                prometheus.terminate()
                prometheus.wait(30)
            server.stop()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failed as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
