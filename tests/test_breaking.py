"""The breaking-change gate: `buf breaking` against the released contract image."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
RELEASED = REPO / "proto" / "released" / "rigger-v1.0.0.binpb"
PROTO = pathlib.Path("proto/rigger/v1/rigger.proto")
HARNESS = pathlib.Path("conformance/proto")


@pytest.fixture
def contract(tmp_path: pathlib.Path) -> pathlib.Path:
    """A scratch copy of the buf workspace to edit: the contract and the harness modules."""
    shutil.copy(REPO / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(REPO / "proto" / "rigger", tmp_path / "proto" / "rigger")
    shutil.copytree(REPO / HARNESS, tmp_path / HARNESS)
    return tmp_path


def _edit(root: pathlib.Path, old: str, new: str) -> None:
    path = root / PROTO
    text = path.read_text()
    assert text.count(old) == 1, f"edit target not unique: {old!r}"
    path.write_text(text.replace(old, new))


def _gate(root: pathlib.Path) -> subprocess.CompletedProcess[str]:
    buf = shutil.which("buf")
    if buf is None:
        pytest.fail("buf is not installed (pip install buf-bin)")
    return subprocess.run(
        [buf, "breaking", "proto", "--against", str(RELEASED)],
        cwd=root,
        capture_output=True,
        text=True,
    )


def test_current_contract_passes_the_gate(contract):
    result = _gate(contract)
    assert result.returncode == 0, result.stdout + result.stderr


def test_renumbering_a_field_fails_the_gate(contract):
    _edit(contract, "  string title = 2;", "  string title = 22;")
    result = _gate(contract)
    assert result.returncode != 0
    assert "title" in result.stdout


def test_removing_a_method_fails_the_gate(contract):
    _edit(contract, "  rpc GetTask(GetTaskRequest) returns (GetTaskResponse);\n", "")
    result = _gate(contract)
    assert result.returncode != 0
    assert "GetTask" in result.stdout


def test_changing_a_stream_shape_fails_the_gate(contract):
    _edit(
        contract,
        "rpc SubscribeToTaskEvents(SubscribeToTaskEventsRequest) returns (stream TaskEvent);",
        "rpc SubscribeToTaskEvents(SubscribeToTaskEventsRequest) returns (TaskEvent);",
    )
    result = _gate(contract)
    assert result.returncode != 0
    assert "SubscribeToTaskEvents" in result.stdout


def test_renaming_a_field_fails_the_gate(contract):
    # JSON clients and grpcurl address fields by name.
    released = (
        "message SubscribeToTaskEventsRequest {\n"
        "  // Only these event types. Empty means every type.\n"
        "  repeated TaskEventType event_types = 1;\n"
        "  // Only events whose task, after the change, has exactly this assignee.\n"
        "  optional string assignee_filter = 2;"
    )
    _edit(contract, released, released.replace("assignee_filter", "assignee_only"))
    assert _gate(contract).returncode != 0


def test_additive_change_passes_the_gate(contract):
    _edit(
        contract,
        "  uint64 version = 16;\n",
        "  uint64 version = 16;\n  // Free-form notes.\n  string notes = 17;\n",
    )
    _edit(
        contract,
        "  rpc TaskEventStream(",
        "  // Counts tasks.\n  rpc CountTasks(CountTasksRequest) returns (CountTasksResponse);\n\n"
        "  rpc TaskEventStream(",
    )
    path = contract / PROTO
    path.write_text(
        path.read_text()
        + "\n// CountTasksRequest is empty.\nmessage CountTasksRequest {}\n"
        + "\n// CountTasksResponse holds a count.\nmessage CountTasksResponse {\n"
        + "  // The count.\n  uint32 count = 1;\n}\n"
    )
    result = _gate(contract)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_gate_ignores_the_harness_protocol(contract):
    # The harness is test tooling with no released users; only rigger.v1 is guarded.
    harness = contract / HARNESS / "rigger" / "conformance" / "v1" / "harness.proto"
    text = harness.read_text()
    assert text.count("  uint64 id = 1;") == 1
    harness.write_text(text.replace("  uint64 id = 1;", "  uint64 id = 9;"))
    result = _gate(contract)
    assert result.returncode == 0, result.stdout + result.stderr
