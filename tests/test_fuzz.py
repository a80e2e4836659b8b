"""Hostile input: random and malformed requests to every RPC never crash the server,
never end in UNKNOWN or INTERNAL, and a rejected call changes nothing."""

from __future__ import annotations

import sqlite3

import grpc
import pytest
from google.protobuf.internal.encoder import _VarintBytes as varint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rigger.v1 import rigger_pb2 as pb
from streams import HEAD_SEQUENCE, WAIT

from testkit.serverproc import ServerProcess

EXAMPLES = 300
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}

UNARY = {
    "ListTasks": pb.ListTasksRequest,
    "AddTask": pb.AddTaskRequest,
    "UpdateTask": pb.UpdateTaskRequest,
    "GetTask": pb.GetTaskRequest,
    "DeleteTask": pb.DeleteTaskRequest,
    "ParsePRD": pb.ParsePRDRequest,
    "GenerateTasksFromPRD": pb.GenerateTasksFromPRDRequest,
    "OrchestrateTask": pb.OrchestrateTaskRequest,
}


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz") / "project"
    root.mkdir()
    (root / "docs").mkdir()
    (root / "docs" / "PRD.md").write_text("# Fuzzed\n## Objectives\n- survive\n")
    proc = ServerProcess(root).start()
    yield proc
    assert proc.stop() == 0  # it never crashed, and it shuts down cleanly


@pytest.fixture(scope="module")
def channel(fuzz_server):
    with fuzz_server.channel() as channel:
        yield channel


def _state(server: ServerProcess) -> tuple:
    with sqlite3.connect(f"file:{server.db}?mode=ro", uri=True) as db:
        return (
            db.execute("SELECT COUNT(*), COALESCE(SUM(version), 0) FROM tasks").fetchone(),
            db.execute("SELECT COALESCE(MAX(sequence), 0) FROM events").fetchone(),
            db.execute("SELECT COUNT(*) FROM prds").fetchone(),
        )


def _call(channel: grpc.Channel, method: str, payload: bytes) -> grpc.StatusCode:
    call = channel.unary_unary(f"/rigger.v1.RiggerService/{method}")
    try:
        call(payload, timeout=10)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _check(server: ServerProcess, channel: grpc.Channel, method: str, payload: bytes) -> None:
    before = _state(server)
    code = _call(channel, method, payload)
    assert code not in FORBIDDEN, f"{method}({payload!r}) ended in {code}"
    if code != grpc.StatusCode.OK:
        assert _state(server) == before, f"rejected {method}({payload!r}) changed the store"
    assert server.proc.poll() is None, "the server died"


# Strings that break things: huge, control characters, lone surrogates
# (unencodable, so left out by protobuf), right-to-left marks, NULs, paths.
hostile_text = st.one_of(
    st.text(max_size=50),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=0, max_size=300),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "../../etc/passwd",
            "/etc/passwd",
            "docs/PRD.md",
            "9999-99-99",
            "2025-02-30",
            "\u202e",
            "x" * 200_000,
        ]
    ),
)
enum_number = st.one_of(st.integers(0, 12), st.integers(-(2**31), 2**31 - 1))
uint32 = st.integers(0, 2**32 - 1)
uint64 = st.integers(0, 2**64 - 1)
settings_ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def requests(draw) -> tuple[str, bytes]:
    """A method and a well-formed request with hostile values."""
    method = draw(st.sampled_from(sorted(UNARY)))
    message = UNARY[method]()
    for field in message.DESCRIPTOR.fields:
        if not draw(st.booleans()):
            continue
        if field.type == field.TYPE_STRING:
            value = draw(hostile_text)
            if field.is_repeated:
                getattr(message, field.name).append(value)
            else:
                setattr(message, field.name, value)
        elif field.type == field.TYPE_ENUM:
            setattr(message, field.name, draw(enum_number))
        elif field.type == field.TYPE_UINT32:
            setattr(message, field.name, draw(uint32))
        elif field.type == field.TYPE_UINT64:
            setattr(message, field.name, draw(uint64))
    return method, message.SerializeToString()


@st.composite
def raw_payloads(draw) -> tuple[str, bytes]:
    """A method and bytes that may not parse: random, invalid UTF-8, or deeply nested."""
    method = draw(st.sampled_from(sorted(UNARY)))
    kind = draw(st.sampled_from(["random", "bad-utf8", "nested"]))
    if kind == "random":
        return method, draw(st.binary(max_size=200))
    if kind == "bad-utf8":
        junk = draw(st.binary(min_size=1, max_size=20).filter(_not_utf8))
        field = draw(st.integers(1, 6))
        return method, varint(field << 3 | 2) + varint(len(junk)) + junk
    depth = draw(st.integers(50, 400))
    payload = b""
    for _ in range(depth):  # an unknown field 15 holding itself, `depth` times
        payload = varint(15 << 3 | 2) + varint(len(payload)) + payload
    return method, payload


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


@settings_
@given(requests())
def test_well_formed_hostile_requests_are_answered_properly(fuzz_server, channel, case):
    _check(fuzz_server, channel, *case)


@settings_
@given(raw_payloads())
def test_malformed_bytes_are_answered_properly(fuzz_server, channel, case):
    _check(fuzz_server, channel, *case)


@settings_
@given(
    st.lists(enum_number, max_size=5),
    st.one_of(st.none(), hostile_text),
    st.one_of(st.none(), uint64),
)
def test_hostile_subscriptions_are_answered_properly(
    fuzz_server, channel, event_types, assignee, after
):
    request = pb.SubscribeToTaskEventsRequest(event_types=event_types)
    if assignee is not None:
        request.assignee_filter = assignee
    if after is not None:
        request.after_sequence = after
    stream = channel.unary_stream("/rigger.v1.RiggerService/SubscribeToTaskEvents")(
        request.SerializeToString(), timeout=WAIT
    )
    # Headers mean the subscription was accepted and registered; a refused one
    # ends at once, with no headers, and its status is what matters.
    if HEAD_SEQUENCE in dict(stream.initial_metadata()):
        stream.cancel()
        return
    assert stream.code() not in {*FORBIDDEN, grpc.StatusCode.OK}, stream.details()
