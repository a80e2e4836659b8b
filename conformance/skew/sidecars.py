"""The sidecars of this checkout, and `rig watch`, against real old servers.

Each reads SubscribeToTaskEventBatches and falls back to SubscribeToTaskEvents
on a server that answers UNIMPLEMENTED. Against a server built the way the
old-server half builds one, each watcher replays the tasks added before it
started and prints those added after, every line byte for byte as expected,
in order, once; and says on stderr whether it fell back, which it must do
exactly on a server without the batched stream.
"""

from __future__ import annotations

import io
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

import grpc

from conformance.executors.launch import REPO
from conformance.skew.steps import SKEW_DIR, SkewError, run_step
from conformance.targets.target import CommandProcess, CommandTemplate

FALLBACK_NOTICE = "reading SubscribeToTaskEvents"
# Tasks added before each watcher starts (replayed) and after (live).
TASKS = 6
WAIT_S = 60.0
# Every watcher, with `rig watch` beside the sidecars: its argv given the server's address.
Watcher = Callable[[str], list[str]]


def watchers() -> dict[str, Watcher]:
    """This checkout's three sidecars, built, and `rig watch`."""
    go = shutil.which("go")
    node = shutil.which("node")
    npm = shutil.which("npm")
    if go is None or node is None or npm is None:
        raise SkewError("the sidecars need go, node and npm on PATH")
    binary = SKEW_DIR / "bin" / "rigger-sidecar"
    run_step(
        [go, "build", "-o", str(binary), "./cmd/rigger-sidecar"], REPO / "clients" / "go", "go"
    )
    run_step([npm, "run", "--silent", "build"], REPO / "clients" / "ts", "building the TS client")
    sidecar_js = str(REPO / "clients" / "ts" / "dist" / "src" / "sidecar.js")
    return {
        "python": lambda address: [
            sys.executable,
            "-m",
            "rigger_client.sidecar",
            "--addr",
            address,
            "--after-sequence",
            "0",
        ],
        "go": lambda address: [str(binary), "--addr", address, "--after-sequence", "0"],
        "ts": lambda address: [node, sidecar_js, "--addr", address, "--after-sequence", "0"],
        "rig": lambda address: [
            sys.executable,
            "-m",
            "rigger_server.cli",
            "watch",
            "--addr",
            address,
            "--after",
            "0",
        ],
    }


def _add_tasks(address: str, titles: Sequence[str]) -> list[str]:
    from rigger.v1 import rigger_pb2 as pb
    from rigger.v1 import rigger_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        return [stub.AddTask(pb.AddTaskRequest(title=t), timeout=30).task.id for t in titles]


def _pump(stream: io.BufferedReader, sink: queue.Queue[bytes | None]) -> None:
    for line in stream:
        sink.put(line)
    sink.put(None)


def _take(lines: queue.Queue[bytes | None], count: int, deadline: float) -> list[bytes]:
    """Up to `count` lines: fewer when stdout closed or the deadline passed."""
    got: list[bytes] = []
    while len(got) < count:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        got.append(line)
    return got


def watch_run(server_command: str, label: str, name: str, watcher: Watcher) -> tuple[str, bool]:
    """One watcher against a fresh server: (what went wrong or '', whether it fell back)."""
    root = SKEW_DIR / "sidecars" / f"{label}-{name}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    server = CommandProcess(CommandTemplate.parse(server_command), root).start()
    proc: subprocess.Popen[bytes] | None = None
    try:
        titles = [f"{label} {name} {i}" for i in range(2 * TASKS)]
        ids = _add_tasks(server.address, titles[:TASKS])
        with (root / "watcher.err").open("wb") as err:
            proc = subprocess.Popen(watcher(server.address), stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        lines: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        deadline = time.monotonic() + WAIT_S
        got = _take(lines, TASKS, deadline)  # replayed
        ids += _add_tasks(server.address, titles[TASKS:])
        got += _take(lines, TASKS, deadline)  # live
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()
    said = (root / "watcher.err").read_text(encoding="utf-8", errors="replace")
    expected = [
        f'#{n} CREATED task={i} title="{t}" status=TODO assignee=-\n'.encode()
        for n, (i, t) in enumerate(zip(ids, titles, strict=True), start=1)
    ]
    problems = []
    if got != expected:
        problems.append(f"printed {got!r}, expected {expected!r}")
    if code != 0:
        problems.append(f"exited {code} on SIGINT")
    if problems:
        problems.append(f"stderr: {said.strip()}")
    return "; ".join(problems), FALLBACK_NOTICE in said


def check(servers: Sequence[tuple[str, str, bool]], names: Sequence[str]) -> int:
    """Each watcher against each (label, server command, has batches) server; 0 when all passed.

    `names` picks the sidecars by language; `rig watch` always runs.
    """
    chosen = {name: w for name, w in watchers().items() if name in names or name == "rig"}
    failed = 0
    for label, command, batched in servers:
        for name, watcher in chosen.items():
            problem, fell_back = watch_run(command, label, name, watcher)
            if not problem and fell_back == batched:
                problem = (
                    "fell back to SubscribeToTaskEvents on a server that has the batched stream"
                    if batched
                    else "never said it fell back to SubscribeToTaskEvents"
                )
            stream = "the plain stream after falling back" if fell_back else "batches"
            verdict = f"FAILED: {problem}" if problem else "passed"
            print(f"skew: watcher {name:<6} vs {label:<11} read {stream}: {verdict}")
            failed += bool(problem)
    return 1 if failed else 0
