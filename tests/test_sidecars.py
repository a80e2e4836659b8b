"""Each language's sidecar prints every event once, in order, across a server restart.

Each prints the same bytes (clients/testdata/event-lines.txt); with --state-file
each survives its own SIGKILL and restart, repeating at most one line; each
ends with the status clients/README.md's exit status table gives each
situation; a reader that stops reading holds each back.
"""

from __future__ import annotations

import array
import fcntl
import functools
import json
import os
import pathlib
import queue
import re
import shutil
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator

import grpc
import psutil
import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc

from testkit.serverproc import ServerProcess
from testkit.wait import wait_until

# Each builds and starts a client program (the Go and TypeScript builds take a while).
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parent.parent
GOLDEN = REPO / "clients" / "testdata"
CLIENTS_README = REPO / "clients" / "README.md"
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
    """A sidecar process whose stdout lines are kept, as bytes, as they arrive."""

    def __init__(self, command: list[str], address: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [*command, "--addr", address, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        # Each stdout line with its newline, exactly as written; None at EOF.
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self.stderr: list[str] = []
        self.stderr_closed = threading.Event()
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.decode("utf-8", errors="replace").rstrip("\n"))
        self.stderr_closed.set()

    def take_bytes(self, count: int, timeout: float = 20.0) -> list[bytes]:
        """The next `count` stdout lines, each with its newline, as written."""
        found: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                pytest.fail(
                    f"got {len(found)} of {count} lines; stderr:\n" + "\n".join(self.stderr)
                )
            found.append(line)
        return found

    def take(self, count: int, timeout: float = 20.0) -> list[re.Match[str]]:
        """The next `count` event lines, parsed."""
        found = []
        for raw in self.take_bytes(count, timeout):
            line = raw.decode("utf-8")
            assert line.endswith("\n"), f"an unfinished line: {line!r}"
            match = LINE.match(line[:-1])
            assert match, f"not an event line: {line!r}"
            found.append(match)
        return found

    def rest(self, timeout: float = 20.0) -> list[re.Match[str]]:
        """Every event line until stdout closes (the process ended)."""
        found = []
        deadline = time.monotonic() + timeout
        while (raw := self.lines.get(timeout=max(0.0, deadline - time.monotonic()))) is not None:
            match = LINE.match(raw.decode("utf-8").rstrip("\n"))
            assert match, f"not an event line: {raw!r}"
            found.append(match)
        return found

    def quiet_for(self, seconds: float) -> bool:
        """True if no further line arrives within `seconds`."""
        try:
            line = self.lines.get(timeout=seconds)
        except queue.Empty:
            return True
        pytest.fail(f"unexpected extra line: {line!r}")

    def exit_code(self, timeout: float = 20.0) -> int:
        """Wait for the process to end by itself, and all it said on stderr; its exit code."""
        code = self.proc.wait(timeout)
        assert self.stderr_closed.wait(timeout), "stderr still open"
        return code

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

# The situations of the exit status table (clients/README.md), as the tests
# below bring each about.
STOPPED = "stopped by SIGINT (Ctrl-C) or SIGTERM"
HELP = "asked for `--help`"
NOT_RETRIED = "the server ends the watch with a status it does not retry (see *Reconnecting*)"
STDOUT_CLOSED = "stdout is closed: whoever read it is gone (`EPIPE`)"
STATE_UNWRITABLE = "the state file cannot be written while running"
TLS_UNUSABLE = "a TLS file (`--ca-file`, `--cert-file`, `--key-file`) cannot be used"
BAD_FLAG = "a flag it does not know, or a value it cannot use"
TOKEN_FILE = "`--token-file` cannot be read, or its first line is empty"
STATE_AT_START = "the state file cannot be used at start (see *The state file*)"
EXIT_ROW = re.compile(r"^\| `(?P<status>\d+)` \| (?P<situation>.+) \|$")


@functools.cache
def documented_exit() -> dict[str, int]:
    """The exit status table of clients/README.md: each situation's status."""
    text = CLIENTS_README.read_text(encoding="utf-8")
    section = text.split("\n## Exit status\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, int] = {}
    for line in section.splitlines():
        if match := EXIT_ROW.match(line):
            assert match["situation"] not in rows, f"listed twice: {line}"
            rows[match["situation"]] = int(match["status"])
    return rows


def test_the_exit_status_table_lists_each_situation_the_tests_bring_about():
    situations = [STOPPED, HELP, NOT_RETRIED, STDOUT_CLOSED, STATE_UNWRITABLE, TLS_UNUSABLE]
    situations += [BAD_FLAG, TOKEN_FILE, STATE_AT_START]
    assert sorted(documented_exit()) == sorted(situations)


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
    assert sidecar.interrupt() == 0 == documented_exit()[STOPPED]


@pytest.mark.parametrize("language", LANGUAGES)
def test_sidecar_exits_cleanly_on_sigterm(language, server, run_sidecar):
    sidecar = run_sidecar(language, server.address)
    _wait_subscribed(server, sidecar)
    sidecar.proc.send_signal(signal.SIGTERM)
    assert sidecar.exit_code() == documented_exit()[STOPPED]


@pytest.mark.parametrize("language", LANGUAGES)
def test_sidecar_help_exits_with_the_documented_status(language, run_sidecar):
    sidecar = run_sidecar(language, "127.0.0.1:1", "--help")
    assert sidecar.exit_code() == documented_exit()[HELP]


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize(
    "flags",
    [("--no-such-flag",), ("--after-sequence", "-1"), ("--event-type", "NOPE")],
    ids=["unknown-flag", "negative-sequence", "unknown-type"],
)
def test_a_flag_it_cannot_use_exits_with_the_documented_status(language, flags, run_sidecar):
    sidecar = run_sidecar(language, "127.0.0.1:1", *flags)
    assert sidecar.exit_code() == documented_exit()[BAD_FLAG]
    assert sidecar.rest() == []


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("problem", ["missing", "empty-first-line", "directory"])
def test_a_token_file_it_cannot_use_exits_with_the_documented_status(
    language, problem, run_sidecar, tmp_path
):
    token_file = tmp_path / "token"
    if problem == "empty-first-line":
        token_file.write_text("\ntoken-on-the-second-line\n")
    elif problem == "directory":
        token_file.mkdir()
    # No server: the sidecar must stop before it connects.
    sidecar = run_sidecar(language, "127.0.0.1:1", "--token-file", str(token_file))
    assert sidecar.exit_code() == documented_exit()[TOKEN_FILE] == 2
    assert "--token-file" in "\n".join(sidecar.stderr)
    assert sidecar.rest() == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_ca_file_it_cannot_read_exits_with_the_documented_status(language, run_sidecar, tmp_path):
    sidecar = run_sidecar(language, "127.0.0.1:1", "--ca-file", str(tmp_path / "missing.pem"))
    assert sidecar.exit_code() == documented_exit()[TLS_UNUSABLE]
    assert sidecar.rest() == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_closed_stdout_exits_with_the_documented_status(language, server, sidecar_commands):
    for i in range(3):
        _add(server.address, f"task {i}")
    unread, stdout = os.pipe()
    os.close(unread)  # whoever read it is gone before the first line
    proc = subprocess.Popen(
        [*sidecar_commands(language), "--addr", server.address, "--after-sequence", "0"],
        stdout=stdout,
        stderr=subprocess.PIPE,
    )
    os.close(stdout)
    _, said = proc.communicate(timeout=30)
    assert proc.returncode == documented_exit()[STDOUT_CLOSED] == 1, said.decode()


# A log of far more event lines than a held-back sidecar may keep in memory.
BACKLOG_EVENTS = 800
BACKLOG_TITLE_CHARS = 100_000  # the server accepts titles up to 128 KiB
# What a sidecar whose reader stopped may grow by: a batch of events being
# printed, and what the transport takes before flow control stops the server.
HELD_BACK_GROWTH_MIB = 32


def _rss_mib(process: psutil.Process) -> float:
    return process.memory_info().rss / 2**20


def _settled_rss_mib(process: psutil.Process, within: float = 60.0) -> float:
    """The process's RSS in MiB once it stops moving (four samples within 1 MiB)."""
    samples = [_rss_mib(process)]

    def settled() -> bool:
        samples.append(_rss_mib(process))
        recent = samples[-4:]
        return len(recent) == 4 and max(recent) - min(recent) < 1.0

    wait_until(settled, "the sidecar's RSS to settle", within=within, every=0.25)
    return samples[-1]


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_reader_that_stops_reading_holds_the_sidecar_back(
    language, server, sidecar_commands, tmp_path
):
    with grpc.insecure_channel(server.address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        for i in range(BACKLOG_EVENTS):
            stub.AddTask(pb.AddTaskRequest(title=f"{i} " + "x" * BACKLOG_TITLE_CHARS))
    backlog_mib = BACKLOG_EVENTS * BACKLOG_TITLE_CHARS / 2**20
    log = tmp_path / "stderr"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [*sidecar_commands(language), "--addr", server.address, "--after-sequence", "0"],
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        assert proc.stdout is not None
        process = psutil.Process(proc.pid)
        wait_until(lambda: "subscribed" in log.read_text(), "the sidecar to subscribe")
        started = _rss_mib(process)
        # Nobody reads stdout: the pipe fills, and the sidecar must stop
        # taking events rather than keep every line it cannot print.
        held = _settled_rss_mib(process)
        print(f"{language}: RSS {started:.1f} MiB subscribed, {held:.1f} MiB held back")
        assert held - started < HELD_BACK_GROWTH_MIB < backlog_mib / 2, log.read_text()
        # Read again, it goes on from where it stopped: every line, in order.
        sequences: list[int] = []

        def read_backlog() -> None:
            assert proc.stdout is not None
            while len(sequences) < BACKLOG_EVENTS and (line := proc.stdout.readline()):
                sequences.append(int(line.split(b" ", 1)[0].removeprefix(b"#")))

        reader = threading.Thread(target=read_backlog, daemon=True)
        reader.start()
        reader.join(60)
        assert sequences == list(range(1, BACKLOG_EVENTS + 1)), log.read_text()
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_state_file_it_cannot_write_while_running_exits_with_the_documented_status(
    language, server, run_sidecar, tmp_path
):
    state = tmp_path / "state"
    sidecar = run_sidecar(language, server.address, "--state-file", str(state))
    _wait_subscribed(server, sidecar)
    _wait_recorded(state, 0)
    # A non-empty directory where the file was: no record can be renamed over it.
    state.unlink()
    state.mkdir()
    (state / "keep").write_text("")
    _add(server.address, "printed, then not recorded")
    assert [int(m["seq"]) for m in sidecar.rest()] == [1]
    assert sidecar.exit_code() == documented_exit()[STATE_UNWRITABLE]
    assert f"--state-file {state}" in "\n".join(sidecar.stderr)


def _golden_creations() -> list[tuple[str, str | None, bytes]]:
    """The golden cases a real server can reproduce, as (title, assignee, line after the id).

    Those are CREATED events of a TODO task whose id the server could have
    made (printed bare) and whose title it accepts (not blank). The rest of
    each line — title, status and assignee — is compared byte for byte.
    """
    cases = json.loads((GOLDEN / "event-lines.json").read_text(encoding="utf-8"))["cases"]
    lines = (GOLDEN / "event-lines.txt").read_bytes().split(b"\n")
    found = []
    for case, line in zip(cases, lines, strict=False):
        event = case["event"]
        task = event.get("task", {})
        prefix = f"#{event.get('sequence')} CREATED task={task.get('id')} ".encode()
        if (
            event.get("eventType") == "TASK_EVENT_TYPE_CREATED"
            and task.get("status") == "TASK_STATUS_TODO"
            and task.get("title", "").strip()
            and line.startswith(prefix)
        ):
            found.append((task["title"], task.get("assignee"), line[len(prefix) :] + b"\n"))
    return found


@pytest.mark.parametrize("language", LANGUAGES)
def test_sidecar_prints_the_golden_lines_byte_for_byte(language, server, run_sidecar):
    creations = _golden_creations()
    assert len(creations) >= 10, "the golden file should give a real server ten cases or more"
    expected = []
    for sequence, (title, assignee, rest) in enumerate(creations, start=1):
        task = _add(server.address, title, assignee)
        expected.append(f"#{sequence} CREATED task={task.id} ".encode() + rest)
    sidecar = run_sidecar(language, server.address, "--after-sequence", "0")
    assert sidecar.take_bytes(len(expected)) == expected


def _unread(fd: int) -> int:
    """How many bytes wait in the pipe `fd` reads from."""
    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count)
    return count[0]


def _recorded(path: pathlib.Path) -> int | None:
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return None  # not written yet


def _wait_recorded(path: pathlib.Path, sequence: int) -> None:
    wait_until(lambda: _recorded(path) == sequence, f"{path} to hold {sequence}", within=20)


@pytest.mark.parametrize("language", LANGUAGES)
def test_sidecar_killed_and_restarted_with_its_state_file_loses_nothing(
    language, server, run_sidecar, tmp_path
):
    state = tmp_path / "state"
    for i in range(5):
        _add(server.address, f"before {i}")
    flags = ("--state-file", str(state), "--after-sequence", "0")
    first = run_sidecar(language, server.address, *flags)
    assert [int(m["seq"]) for m in first.take(5)] == [1, 2, 3, 4, 5]
    _wait_recorded(state, 5)

    # Kill it with SIGKILL while events keep coming, then take what it had
    # printed into the pipe and what it had recorded.
    total = 40
    writer = threading.Thread(
        target=lambda: [_add(server.address, f"during {i}") for i in range(total - 5)]
    )
    writer.start()
    printed = list(range(1, 6)) + [int(m["seq"]) for m in first.take(5)]
    first.proc.kill()
    printed += [int(m["seq"]) for m in first.rest()]
    assert printed == list(range(1, len(printed) + 1))
    recorded = _recorded(state)
    writer.join(60)
    assert recorded is not None
    # Recorded after printing: at most the last line printed is unrecorded.
    assert printed[-1] - 1 <= recorded <= printed[-1]

    # The same command again: the state file wins over --after-sequence.
    second = run_sidecar(language, server.address, *flags)
    again = [int(m["seq"]) for m in second.take(total - recorded)]
    assert again == list(range(recorded + 1, total + 1))
    assert sorted(set(printed) | set(again)) == list(range(1, total + 1))
    repeated = sorted(set(printed) & set(again))
    assert repeated == list(range(recorded + 1, printed[-1] + 1))
    _wait_recorded(state, total)


@pytest.mark.skipif(not hasattr(fcntl, "F_SETPIPE_SZ"), reason="needs Linux pipes")
@pytest.mark.parametrize("language", LANGUAGES)
def test_sidecar_killed_in_the_middle_of_a_line_prints_that_line_again_in_full(
    language, server, sidecar_commands, tmp_path
):
    # Lines longer than twice the pipe: once the reader stops after line 2,
    # the sidecar is stuck writing line 3, which it must not have recorded.
    # A sidecar that recorded before printing would resume after line 3 and
    # lose it.
    state = tmp_path / "state"
    for i in range(5):
        _add(server.address, f"{i}" * (16 * 1024))
    flags = ["--addr", server.address, "--after-sequence", "0", "--state-file", str(state)]
    proc = subprocess.Popen(
        [*sidecar_commands(language), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, 4096)
        out = b""
        while out.count(b"\n") < 2:
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, "stdout closed early"
            out += chunk
        # Once part of line 3 is out, the sidecar is inside that line for good.
        fd = proc.stdout.fileno()
        wait_until(lambda: not out.endswith(b"\n") or _unread(fd) > 0, "line 3 to start", within=20)
        _wait_recorded(state, 2)
        proc.kill()
        proc.wait()
        out += proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _recorded(state) == 2
    first_lines = out.split(b"\n")
    assert [line.split(b" ", 1)[0] for line in first_lines[:2]] == [b"#1", b"#2"]
    assert first_lines[2].startswith(b"#3 CREATED ")  # cut short by the kill
    assert len(first_lines) == 3

    again = Sidecar(sidecar_commands(language), server.address, "--state-file", str(state))
    try:
        assert [int(m["seq"]) for m in again.take(3)] == [3, 4, 5]
    finally:
        again.close()


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_live_sidecar_records_where_it_started_before_any_event(
    language, server, run_sidecar, tmp_path
):
    state = tmp_path / "state"
    for i in range(3):
        _add(server.address, f"before {i}")
    first = run_sidecar(language, server.address, "--state-file", str(state))
    _wait_subscribed(server, first)
    _wait_recorded(state, 3)  # the head it resumes after: nothing printed yet
    first.proc.kill()
    first.proc.wait()
    for i in range(2):
        _add(server.address, f"while down {i}")
    second = run_sidecar(language, server.address, "--state-file", str(state))
    assert [int(m["seq"]) for m in second.take(2)] == [4, 5]


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "is empty"),
        (b"twelve\n", 'holds "twelve", not a sequence'),
        (b"-3\n", 'holds "-3", not a sequence'),
        (b"18446744073709551616\n", 'holds "18446744073709551616", not a sequence'),
        (b"\x1b[2J\x85" * 30, "holds more than a sequence (over 64 bytes)"),
        (b"\x1b[2J\x85", 'holds "\\u001b[2J\ufffd", not a sequence'),
        (None, "is not a regular file"),  # a directory
    ],
    ids=["empty", "text", "negative", "over-uint64", "oversized", "escape", "directory"],
)
def test_a_state_file_that_holds_no_sequence_stops_the_sidecar_with_status_2(
    language, content, reason, run_sidecar, tmp_path
):
    state = tmp_path / "state"
    if content is None:
        state.mkdir()
    else:
        state.write_bytes(content)
    # No server: the sidecar must stop before it connects.
    sidecar = run_sidecar(language, "127.0.0.1:1", "--state-file", str(state))
    assert sidecar.exit_code() == 2 == documented_exit()[STATE_AT_START]
    said = "\n".join(sidecar.stderr)
    assert f"--state-file {state}: {reason}" in said
    assert "\x1b" not in said
    assert sidecar.rest() == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_state_file_in_a_missing_directory_stops_the_sidecar_with_status_2(
    language, run_sidecar, tmp_path
):
    state = tmp_path / "gone" / "state"
    sidecar = run_sidecar(language, "127.0.0.1:1", "--state-file", str(state))
    assert sidecar.exit_code() == 2 == documented_exit()[STATE_AT_START]
    said = "\n".join(sidecar.stderr)
    assert f"--state-file {state}: its directory cannot be written: no such file" in said


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_state_file_beyond_the_servers_log_is_refused_by_the_server(
    language, server, run_sidecar, tmp_path
):
    # E.g. the database was replaced: the server says so and the sidecar stops.
    state = tmp_path / "state"
    state.write_text("99\n")
    sidecar = run_sidecar(language, server.address, "--state-file", str(state))
    assert sidecar.exit_code() == 1 == documented_exit()[NOT_RETRIED]
    said = "\n".join(sidecar.stderr)
    assert "INVALID_ARGUMENT" in said
    assert "was the database replaced?" in said
    assert state.read_text() == "99\n"
