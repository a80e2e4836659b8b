"""Each language's sidecar prints every event once, in order, across a server restart."""

from __future__ import annotations

import functools
import json
import pathlib
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc

from testkit.serverproc import ServerProcess
from testkit.wait import wait_until

# Each builds and starts a client program (the Go and TypeScript builds take a while).
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parent.parent
LINE = re.compile(
    r"^#(?P<seq>\d+) (?P<type>[A-Z_0-9]+) task=(?P<task>\S+) title=(?P<title>\".*\") "
    r"status=(?P<status>[A-Z_0-9]+) assignee=(?P<assignee>-|\".*\")$"
)


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed; .ci/run installs it")
    return path


@pytest.fixture(scope="session")
def sidecar_commands(tmp_path_factory: pytest.TempPathFactory):
    """How to run a language's sidecar, built on first use and once per session."""
    out = tmp_path_factory.mktemp("sidecars")
    builders = {
        "python": lambda: [sys.executable, "-m", "rigger_client.sidecar"],
        "go": lambda: _build_go(out),
        "ts": _build_ts,
    }
    return functools.cache(lambda language: builders[language]())


def _build_go(out: pathlib.Path) -> list[str]:
    binary = out / "rigger-sidecar"
    subprocess.run(
        [_require("go"), "build", "-o", str(binary), "./cmd/rigger-sidecar"],
        cwd=REPO / "clients" / "go",
        check=True,
    )
    return [str(binary)]


def _build_ts() -> list[str]:
    ts = REPO / "clients" / "ts"
    npm = _require("npm")
    if not (ts / "node_modules").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=ts, check=True)
    subprocess.run([npm, "run", "--silent", "build"], cwd=ts, check=True)
    return [_require("node"), str(ts / "dist" / "src" / "sidecar.js")]


class Sidecar:
    """A sidecar process whose stdout lines are parsed as they arrive."""

    def __init__(self, command: list[str], address: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [*command, "--addr", address, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(
            target=self._pump, args=(self.proc.stdout, self.lines.put), daemon=True
        ).start()
        threading.Thread(
            target=self._pump, args=(self.proc.stderr, self.stderr.append), daemon=True
        ).start()

    @staticmethod
    def _pump(stream, sink) -> None:
        for line in stream:
            sink(line.rstrip("\n"))

    def take(self, count: int, timeout: float = 20.0) -> list[re.Match[str]]:
        """The next `count` event lines, parsed."""
        found = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(
                    f"got {len(found)} of {count} lines; stderr:\n" + "\n".join(self.stderr)
                )
            match = LINE.match(line)
            assert match, f"not an event line: {line!r}"
            found.append(match)
        return found

    def quiet_for(self, seconds: float) -> bool:
        """True if no further line arrives within `seconds`."""
        try:
            line = self.lines.get(timeout=seconds)
        except queue.Empty:
            return True
        pytest.fail(f"unexpected extra line: {line!r}")

    def interrupt(self) -> int:
        """Ctrl-C, then the exit code."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(15)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def run_sidecar(sidecar_commands) -> Iterator:
    started: list[Sidecar] = []

    def run(language: str, address: str, *extra: str) -> Sidecar:
        sidecar = Sidecar(sidecar_commands(language), address, *extra)
        started.append(sidecar)
        return sidecar

    yield run
    for sidecar in started:
        sidecar.close()


def _add(address: str, title: str, assignee: str | None = None) -> pb.Task:
    with grpc.insecure_channel(address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        return stub.AddTask(pb.AddTaskRequest(title=title, assignee=assignee)).task


def _wait_subscribed(server: ServerProcess, sidecar: Sidecar) -> None:
    # A live-only subscriber sees only what is committed after it subscribed;
    # the sidecars announce the subscription on stderr.
    wait_until(
        lambda: any("subscribed" in line for line in sidecar.stderr),
        "the sidecar to subscribe; stderr:\n" + "\n".join(sidecar.stderr),
        within=20,
    )


LANGUAGES = ["python", "go", "ts"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_sidecar_prints_one_line_per_event(language, server, run_sidecar):
    sidecar = run_sidecar(language, server.address)
    _wait_subscribed(server, sidecar)
    task = _add(server.address, 'Ship "v1" ✓', "Alice")
    (line,) = sidecar.take(1)
    assert line["seq"] == "1"
    assert line["type"] == "CREATED"
    assert line["task"] == task.id
    assert json.loads(line["title"]) == 'Ship "v1" ✓'
    assert line["status"] == "TODO"
    assert json.loads(line["assignee"]) == "Alice"


@pytest.mark.parametrize("language", LANGUAGES)
def test_sidecar_applies_type_and_assignee_filters(language, server, run_sidecar):
    sidecar = run_sidecar(language, server.address, "--event-type", "CREATED", "--assignee", "Bob")
    _wait_subscribed(server, sidecar)
    _add(server.address, "for alice", "Alice")
    bob = _add(server.address, "for bob", "Bob")
    (line,) = sidecar.take(1)
    assert line["task"] == bob.id
    assert sidecar.quiet_for(0.5)


@pytest.mark.parametrize("language", LANGUAGES)
def test_sidecar_resumes_after_restart_without_gap_or_duplicate(language, server, run_sidecar):
    sidecar = run_sidecar(language, server.address)
    _wait_subscribed(server, sidecar)
    for i in range(3):
        _add(server.address, f"before {i}")
    assert [int(m["seq"]) for m in sidecar.take(3)] == [1, 2, 3]

    server.stop()
    # Written while the sidecar's server is down, through a second server on
    # another port and the same database: the sidecar must replay these.
    offline = ServerProcess(server.root, db=server.db).start()
    for i in range(2):
        _add(offline.address, f"offline {i}")
    offline.stop()
    server.start()
    for i in range(2):
        _add(server.address, f"after {i}")

    lines = sidecar.take(4)
    assert [int(m["seq"]) for m in lines] == [4, 5, 6, 7]
    assert [json.loads(m["title"]) for m in lines] == [
        "offline 0",
        "offline 1",
        "after 0",
        "after 1",
    ]
    assert sidecar.quiet_for(0.5)


@pytest.mark.parametrize("language", LANGUAGES)
def test_sidecar_exits_cleanly_on_ctrl_c(language, server, run_sidecar):
    sidecar = run_sidecar(language, server.address)
    _wait_subscribed(server, sidecar)
    assert sidecar.interrupt() == 0
