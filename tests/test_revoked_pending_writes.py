"""A write is authorized by a token valid when it is applied, not only when its call opened.

The interceptor checks a token when a call's headers arrive; a unary call's
body, and so its write, may follow much later. These tests open the calls the
way an attacker would — HEADERS only, with a raw HTTP/2 client (h2) — revoke
the token (SIGHUP), and only then send the bodies: every write must be refused
with UNAUTHENTICATED and leave nothing behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import shutil
import socket
import sqlite3
import struct
import time

import grpc
import h2.config
import h2.connection
import h2.events
import pytest
from google.protobuf.message import Message
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from streams import WAIT
from test_token_revocation import KEPT, NEW, OLD, bearer, rotate

from testkit.serverproc import ServerProcess

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "PRD.md"
SERVICE = "/rigger.v1.RiggerService/"


@dataclasses.dataclass
class Answer:
    """How a call ended: its grpc-status and grpc-message."""

    status: int | None = None
    message: str = ""


class RawCalls:
    """gRPC calls over one HTTP/2 connection, whose headers and bodies are sent apart."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.answers: dict[int, Answer] = {}
        self.ended: set[int] = set()
        self._flush()

    def _flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def open(self, method: str, token: str) -> int:
        """Send a call's HEADERS only; return its stream id."""
        stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            stream,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", SERVICE + method),
                (":authority", "127.0.0.1"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("authorization", f"Bearer {token}"),
            ],
        )
        self.answers[stream] = Answer()
        self._flush()
        return stream

    def send(self, stream: int, request: Message) -> None:
        """Send the call's one request message and end its side of the stream."""
        body = request.SerializeToString()
        self.conn.send_data(stream, b"\0" + struct.pack(">I", len(body)) + body, end_stream=True)
        self._flush()

    def complete(self, method: str, token: str, request: Message) -> Answer:
        """Make a whole call, headers and body at once, and wait for its end."""
        stream = self.open(method, token)
        self.send(stream, request)
        self.wait_for({stream})
        return self.answers[stream]

    def wait_all(self) -> dict[int, Answer]:
        """Read until every opened call has ended; return how each ended."""
        self.wait_for(set(self.answers))
        return self.answers

    def wait_for(self, streams: set[int], within: float = WAIT) -> None:
        """Read until the calls on `streams` have ended."""
        deadline = time.monotonic() + within
        while not streams <= self.ended:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"calls still open: {streams - self.ended}"
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            assert data, "the server closed the connection"
            for event in self.conn.receive_data(data):
                self._on(event)
            self._flush()
        return self.answers

    def _on(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived):
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
            answer = self.answers[event.stream_id]
            for name, value in event.headers or ():
                key = name.decode() if isinstance(name, bytes) else name
                text = value.decode() if isinstance(value, bytes) else value
                if key == "grpc-status":
                    answer.status = int(text)
                elif key == "grpc-message":
                    answer.message = text
        elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
            self.ended.add(event.stream_id)

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()


@pytest.fixture
def token_file(project: pathlib.Path) -> pathlib.Path:
    path = project.parent / "tokens.txt"
    path.write_text(f"{OLD}\n{KEPT}\n")
    return path


@pytest.fixture
def server(project, token_file):
    (project / "docs").mkdir()
    shutil.copy(EXAMPLE, project / "docs" / "PRD.md")
    proc = ServerProcess(
        project, extra_args=("--auth-token-file", str(token_file)), token=KEPT
    ).start()
    yield proc
    proc.stop()


def stored_prds(server: ServerProcess) -> int:
    with sqlite3.connect(f"file:{server.db}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT COUNT(*) FROM prds").fetchone()[0])


async def everything(stub) -> tuple[list[bytes], int]:
    """Every task (archived too) as bytes, and the log's head."""
    listed = await stub.ListTasks(pb.ListTasksRequest(), metadata=bearer(KEPT))
    archived = await stub.ListTasks(
        pb.ListTasksRequest(status=pb.TASK_STATUS_ARCHIVED), metadata=bearer(KEPT)
    )
    tasks = sorted(t.SerializeToString() for t in [*listed.tasks, *archived.tasks])
    head = await stub.SubscribeToTaskEvents(
        pb.SubscribeToTaskEventsRequest(), metadata=bearer(KEPT)
    ).initial_metadata()
    return tasks, int(dict(head)["rigger-head-sequence"])


async def test_writes_opened_before_a_rotation_and_sent_after_it_are_refused_and_write_nothing(
    server, token_file
):
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        victim = (await stub.AddTask(pb.AddTaskRequest(title="victim"), metadata=bearer(KEPT))).task
        other = (await stub.AddTask(pb.AddTaskRequest(title="other"), metadata=bearer(KEPT))).task
        before = await everything(stub)
        prds_before = stored_prds(server)

        raw = RawCalls(server.port)
        try:
            writes = {
                raw.open("AddTask", OLD): pb.AddTaskRequest(title="planted", assignee="attacker"),
                raw.open("UpdateTask", OLD): pb.UpdateTaskRequest(
                    task_id=victim.id, assignee="attacker"
                ),
                raw.open("DeleteTask", OLD): pb.DeleteTaskRequest(task_id=victim.id),
                raw.open("ParsePRD", OLD): pb.ParsePRDRequest(prd_file_path="docs/PRD.md"),
                raw.open("GenerateTasksFromPRD", OLD): pb.GenerateTasksFromPRDRequest(
                    prd_id="docs/PRD.md"
                ),
                raw.open("OrchestrateTask", OLD): pb.OrchestrateTaskRequest(task_id=other.id),
            }
            # A call opened the same way with a token that stays: the harness works.
            kept = raw.open("AddTask", KEPT)
            # The server takes calls in the order they came: once a later
            # call is answered, the interceptor has passed every call above.
            await asyncio.to_thread(raw.complete, "ListTasks", KEPT, pb.ListTasksRequest())
            await rotate(server, token_file, stub, KEPT, NEW)
            for stream, request in writes.items():
                raw.send(stream, request)
            raw.send(kept, pb.AddTaskRequest(title="kept"))
            answers = await asyncio.to_thread(raw.wait_all)
        finally:
            raw.close()

        for stream in writes:
            assert answers[stream].status == grpc.StatusCode.UNAUTHENTICATED.value[0], answers
            assert "revoked" in answers[stream].message
        assert answers[kept].status == grpc.StatusCode.OK.value[0], answers[kept]
        tasks, head = await everything(stub)
        kept_task = [t for t in tasks if t not in before[0]]
        assert len(kept_task) == 1  # only the kept token's task is new...
        assert set(before[0]) <= set(tasks)  # ...the victim and the other are untouched
        assert head == before[1] + 1  # and only its CREATED was logged
        assert stored_prds(server) == prds_before
