"""`rig watch`: replay, resume across disconnects, and a state file that survives restarts."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import threading
import time
from typing import Any

import pytest
from rigcli import env_for, guarded_server, rig
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from rigger_server.console import exitcodes

from testkit.serverproc import RIG, ServerProcess

# Seconds any one expectation may take on a loaded machine.
WAIT = 30.0
LINE = re.compile(r"^#(\d+) CREATED task=\S+ title=\".*\" status=TODO assignee=-$")


class Watch:
    """A running `rig watch`, its stdout and stderr read line by line as they come."""

    def __init__(self, server: ServerProcess, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*RIG, "watch", *args],
            cwd=server.root,
            env=env_for(server),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.out: queue.Queue[str | None] = queue.Queue()
        self.err: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(target=_pump, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=_pump, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def wait_subscribed(self) -> None:
        """Return once the watch says it has subscribed."""
        deadline = time.monotonic() + WAIT
        while True:
            line = self.err.get(timeout=max(0.0, deadline - time.monotonic()))
            assert line is not None, f"watch ended: {self.stderr}"
            self.stderr.append(line)
            if line.startswith("subscribed"):
                return

    def lines_until(self, last: int) -> list[str]:
        """The lines printed until the one with sequence `last`."""
        lines: list[str] = []
        deadline = time.monotonic() + WAIT
        while not lines or _sequence(lines[-1]) < last:
            try:
                line = self.out.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no #{last} within {WAIT} s; got {lines}") from None
            assert line is not None, f"watch ended before #{last}: {self._stderr()}"
            lines.append(line)
        return lines

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, list[str]]:
        """Signal the watch; its exit status and the lines it printed but nobody read yet."""
        self.proc.send_signal(sig)
        code = self.proc.wait(WAIT)
        for reader in self._readers:
            reader.join(WAIT)
        rest = []
        while (line := self.out.get_nowait()) is not None:
            rest.append(line)
        return code, rest

    def _stderr(self) -> str:
        while True:
            try:
                line = self.err.get_nowait()
            except queue.Empty:
                return "".join(self.stderr)
            if line is None:
                return "".join(self.stderr)
            self.stderr.append(line)


def _pump(stream: Any, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _sequence(line: str) -> int:
    return int(json.loads(line)["sequence"]) if line.startswith("{") else int(line[1:].split()[0])


def _sequences(lines: list[str]) -> list[int]:
    return [_sequence(line) for line in lines]


def _add(server: ServerProcess, count: int) -> int:
    """Add `count` tasks through the API; the sequence of the last one's event."""
    with server.channel() as channel:
        api = rigger_pb2_grpc.RiggerServiceStub(channel)
        for n in range(count):
            api.AddTask(pb.AddTaskRequest(title=f"task {n}"))
        return _head(api)


def _head(api: rigger_pb2_grpc.RiggerServiceStub) -> int:
    call = api.SubscribeToTaskEvents(pb.SubscribeToTaskEventsRequest())
    head = int(dict(call.initial_metadata())["rigger-head-sequence"])
    call.cancel()
    return head


@pytest.fixture
def watches():
    """Every watch a test starts, killed at its end if still running."""
    started: list[Watch] = []
    yield started
    for watch in started:
        if watch.proc.poll() is None:
            watch.proc.kill()
            watch.proc.wait()


def test_a_watch_restarted_with_its_state_file_loses_and_repeats_nothing(server, tmp_path, watches):
    state = tmp_path / "watch.seq"
    before = _add(server, 3)
    first = Watch(server, "--json", "--state-file", str(state))
    watches.append(first)
    first.wait_subscribed()
    printed = first.lines_until(_add(server, 5))
    code, rest = first.stop()
    assert code == 0
    printed += rest
    assert state.read_text() == f"{_sequences(printed)[-1]}\n"
    _add(server, 5)  # while no watch runs
    second = Watch(server, "--json", "--state-file", str(state))
    watches.append(second)
    second.wait_subscribed()
    printed += second.lines_until(_add(server, 2))
    assert _sequences(printed) == list(range(before + 1, before + 13))


def test_a_killed_watch_loses_nothing_and_repeats_only_its_last_lines(server, tmp_path, watches):
    state = tmp_path / "watch.seq"
    first = Watch(server, "--state-file", str(state))
    watches.append(first)
    first.wait_subscribed()
    writer = threading.Thread(target=_add, args=(server, 300))
    writer.start()
    try:
        printed = first.lines_until(50)
        _, rest = first.stop(signal.SIGKILL)  # mid-stream, as a crash would
        printed += rest
    finally:
        writer.join(120)
    stored = int(state.read_text())
    assert stored <= _sequences(printed)[-1]
    second = Watch(server, "--state-file", str(state))
    watches.append(second)
    again = second.lines_until(300)
    assert all(LINE.match(line.rstrip("\n")) for line in printed + again)
    assert _sequences(again) == list(range(stored + 1, 301))
    assert sorted(set(_sequences(printed)) | set(_sequences(again))) == list(range(1, 301))


def test_a_new_state_file_starts_at_the_servers_newest_event(server, tmp_path, watches):
    state = tmp_path / "watch.seq"
    head = _add(server, 3)
    first = Watch(server, "--state-file", str(state))
    watches.append(first)
    first.wait_subscribed()
    first.stop(signal.SIGKILL)  # before it printed anything
    assert state.read_text() == f"{head}\n"
    _add(server, 1)  # while no watch runs
    second = Watch(server, "--state-file", str(state))
    watches.append(second)
    assert _sequences(second.lines_until(head + 1)) == [head + 1]


def test_after_replays_the_log_first_then_goes_live(server, watches):
    _add(server, 3)
    watch = Watch(server, "--after", "1", "--json")
    watches.append(watch)
    watch.wait_subscribed()
    lines = watch.lines_until(_add(server, 1))
    events = [json.loads(line) for line in lines]
    assert [e["sequence"] for e in events] == [2, 3, 4]
    assert {e["event_type"] for e in events} == {"TASK_EVENT_TYPE_CREATED"}
    assert events[0]["task"]["title"] == "task 1"


def test_the_state_file_wins_over_after(server, tmp_path, watches):
    _add(server, 4)
    state = tmp_path / "watch.seq"
    state.write_text("2\n")
    watch = Watch(server, "--after", "0", "--state-file", str(state))
    watches.append(watch)
    assert _sequences(watch.lines_until(4)) == [3, 4]


def test_the_watch_resumes_across_a_server_restart(server, watches):
    watch = Watch(server, "--after", "0")
    watches.append(watch)
    printed = watch.lines_until(_add(server, 2))
    server.restart()
    printed += watch.lines_until(_add(server, 2))
    assert _sequences(printed) == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "content",
    [b"", b"twelve\n", b"-1\n", b"1.5\n", b"\xff\xfe\n", b"18446744073709551616\n", b"7" * 100_000],
    ids=["empty", "words", "negative", "fraction", "binary", "over-uint64", "huge"],
)
def test_a_state_file_that_holds_no_sequence_is_refused(server, tmp_path, content):
    state = tmp_path / "watch.seq"
    state.write_bytes(content)
    result = rig(server, "watch", "--state-file", str(state))
    assert result.returncode == exitcodes.USAGE.code
    assert str(state) in result.stderr
    assert state.read_bytes() == content


def test_a_state_file_where_none_can_be_written_is_refused(server, tmp_path):
    result = rig(server, "watch", "--after", "0", "--state-file", str(tmp_path / "no" / "seq"))
    assert result.returncode == exitcodes.USAGE.code
    assert "cannot be written" in result.stderr


def test_a_state_file_linked_to_another_file_is_refused_and_the_file_left_alone(server, tmp_path):
    # Temporary names are random and created exclusively (rigger_client's
    # StateFile), so no link can be planted under them; a link in the state
    # file's own place names a file that holds no sequence, and is refused.
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    state = tmp_path / "watch.seq"
    state.symlink_to(victim)
    result = rig(server, "watch", "--after", "0", "--state-file", str(state))
    assert result.returncode == exitcodes.USAGE.code
    assert victim.read_text() == "keep me\n"


def test_a_closed_stdout_ends_the_watch_with_141(server):
    _add(server, 1)
    proc = subprocess.Popen(
        [*RIG, "watch", "--after", "0"],
        cwd=server.root,
        env=env_for(server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b"#1 ")
        proc.stdout.close()  # the reader goes away, as `| head -1` does
        _add(server, 1)  # the next line has nowhere to go
        assert proc.wait(WAIT) == exitcodes.OUTPUT_CLOSED.code
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_refused_token_ends_the_watch_with_7(tmp_path):
    with guarded_server(tmp_path, "none") as (server, _):
        for args in ((), ("--state-file", str(tmp_path / "seq"))):
            result = rig(server, "watch", *args, RIGGER_TOKEN="tok-b")
            assert result.returncode == exitcodes.DENIED.code
            assert "UNAUTHENTICATED" in result.stderr
