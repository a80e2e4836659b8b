"""Nothing acknowledged is lost: crashes, racing writers, vanished subscribers."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import threading

import grpc
import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc

from testkit.serverproc import ServerProcess
from testkit.wait import wait_until

CRASH_ROUNDS = 20


class Acknowledged:
    """Ids of acknowledged writes, shared by writer threads; lets a test wait for a count."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self._changed = threading.Condition()

    def add(self, task_id: str) -> None:
        with self._changed:
            self.ids.append(task_id)
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.ids) >= count, timeout), (
                f"only {len(self.ids)} of {count} writes acknowledged"
            )


def _writer(address: str, acked: Acknowledged) -> None:
    """Add tasks as fast as possible, recording every acknowledged id, until the server dies."""
    with grpc.insecure_channel(address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        n = 0
        while True:
            try:
                reply = stub.AddTask(pb.AddTaskRequest(title=f"write {n}"), timeout=5)
            except grpc.RpcError:
                return
            acked.add(reply.task.id)
            n += 1


def _replay(address: str, after: int, until: int) -> list[int]:
    """Sequences a subscriber resuming after `after` receives, up to `until`."""
    with grpc.insecure_channel(address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        stream = stub.SubscribeToTaskEvents(
            pb.SubscribeToTaskEventsRequest(after_sequence=after), timeout=30
        )
        seen = []
        if until == after:
            stream.cancel()
            return seen
        for event in stream:
            seen.append(event.sequence)
            if event.sequence >= until:
                stream.cancel()
                break
        return seen


@pytest.mark.slow
def test_sigkill_mid_writes_loses_no_acknowledged_write(project):
    server = ServerProcess(project).start()
    rng = random.Random(7)
    checked = 0
    subscriber_position = 0
    for _ in range(CRASH_ROUNDS):
        acked = Acknowledged()
        writers = [threading.Thread(target=_writer, args=(server.address, acked)) for _ in range(2)]
        for writer in writers:
            writer.start()
        # Killed while both writers are still writing, after a different
        # number of acknowledged writes each round.
        acked.wait_for(rng.randint(20, 200))
        server.kill()
        for writer in writers:
            writer.join(10)
        checked += len(acked.ids)

        with sqlite3.connect(server.db) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            sequences = [row[0] for row in db.execute("SELECT sequence FROM events ORDER BY 1")]
        assert sequences == list(range(1, len(sequences) + 1)), "the event log has a gap"

        server.start()  # and the next round writes to this same process
        with server.channel() as channel:
            stub = rigger_pb2_grpc.RiggerServiceStub(channel)
            for task_id in acked.ids:
                stub.GetTask(pb.GetTaskRequest(task_id=task_id), timeout=5)
        head = sequences[-1] if sequences else 0
        missed = _replay(server.address, subscriber_position, head)
        assert missed == list(range(subscriber_position + 1, head + 1))
        subscriber_position = head
    server.stop()
    print(f"{checked} acknowledged writes checked across {CRASH_ROUNDS} SIGKILLs")


SUBSCRIBER = """
import sys, grpc
from rigger.v1 import rigger_pb2 as pb, rigger_pb2_grpc
channel = grpc.insecure_channel(sys.argv[1])
stream = rigger_pb2_grpc.RiggerServiceStub(channel).SubscribeToTaskEvents(
    pb.SubscribeToTaskEventsRequest())
stream.initial_metadata()
print("subscribed", flush=True)
for _ in stream:
    pass
"""


def _can_subscribe(address: str) -> bool:
    """True if a new subscription opens and receives an event; False if the slot is taken."""
    with grpc.insecure_channel(address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        stream = stub.SubscribeToTaskEvents(pb.SubscribeToTaskEventsRequest())
        try:
            stream.initial_metadata()
            stub.AddTask(pb.AddTaskRequest(title="probe"))
            next(stream)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            return False
        stream.cancel()
        return True


def _subscribe_until(address: str, seconds: float) -> None:
    """Open a new subscription, retrying while the server still holds the old one."""
    wait_until(
        lambda: _can_subscribe(address),
        "the old subscription to be released",
        within=seconds,
        every=0.1,
    )


def test_a_killed_subscribers_resources_are_released(project):
    server = ServerProcess(project, extra_args=("--max-subscribers", "1")).start()
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", SUBSCRIBER, server.address], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout.readline().strip() == "subscribed"
        child.kill()
        child.wait()
        _subscribe_until(server.address, seconds=10)
    finally:
        server.stop()


@pytest.mark.slow
def test_a_subscriber_that_stops_reading_is_released_once_it_lags(project):
    server = ServerProcess(project, extra_args=("--max-subscribers", "1", "--buffer", "5"))
    server.start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = rigger_pb2_grpc.RiggerServiceStub(channel)
            stalled = stub.SubscribeToTaskEvents(pb.SubscribeToTaskEventsRequest())
            stalled.initial_metadata()  # registered, and never read again
            # The stalled stream first fills the HTTP/2 windows, then its
            # 5-event queue; the next event ends it and frees its slot.
            padding = "x" * 2000
            for n in range(5000):
                stub.AddTask(pb.AddTaskRequest(title=f"{n} {padding}"))
                if n % 250 == 0 and _can_subscribe(server.address):
                    break
            else:
                pytest.fail("5000 events never pushed the stalled subscriber out")
            with pytest.raises(grpc.RpcError) as ended:
                for _ in stalled:
                    pass
            assert ended.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        server.stop()
