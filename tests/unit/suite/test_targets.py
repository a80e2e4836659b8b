"""What a case requires, what a target grants, and which runs it can take; in process.

tests/test_conformance_targets.py runs the suite against servers started
by a command and already running."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
import yaml
from rigger.v1 import rigger_pb2 as pb

from conformance import cases as c
from conformance.cases import load
from conformance.runner.transcript import Record, Transcript, normalise
from conformance.suite.plan import plan
from conformance.targets import capabilities, target

REPO = pathlib.Path(__file__).resolve().parents[3]


OWN = capabilities.Grants({})


SERVER = capabilities.ServerProfile(
    capabilities.HEAD, frozenset({"health", "reflection"}), frozenset(), "a test"
)


def case(text: str) -> c.Case:
    return load.parse_case(yaml.safe_load(text), pathlib.Path("test.yaml"))


EXPECTS_A_SEQUENCE = case(
    """
name: expects_a_sequence
description: d
steps:
  - open: SubscribeToTaskEvents
    stream: events
  - call: AddTask
    request: {title: T}
  - expect_events: events
    events: [{event_type: CREATED, sequence: 1}]
"""
)


ADDS_A_TASK = case(
    """
name: adds_a_task
description: d
steps:
  - call: AddTask
    request: {title: T}
    expect: {response: {task: {title: T}}}
"""
)


def test_an_expected_sequence_requires_sequence_and_a_fresh_server():
    assert capabilities.requirements(EXPECTS_A_SEQUENCE) == ["fresh_server", "sequence"]


def test_a_case_using_only_first_release_fields_requires_nothing():
    assert capabilities.requirements(ADDS_A_TASK) == []


def test_a_resume_point_taken_from_a_capture_needs_no_fresh_server():
    resumes = case(
        """
name: resumes
description: d
steps:
  - call: AddTask
    request: {title: T}
  - open: SubscribeToTaskEvents
    stream: events
    request: {after_sequence: "${ended.trailers.rigger-last-sequence}"}
    wait_headers: false
"""
    )
    assert capabilities.requirements(resumes) == ["after_sequence"]


def test_server_steps_flags_files_security_and_store_listings_need_control():
    controlling = case(
        """
name: controlling
description: d
server_args: [--buffer, "1"]
files: {prd.md: "# T\\n"}
security: {tokens: [tok-a]}
steps:
  - server: restart
  - call: ListTasks
    expect: {response: {total_count: 0}}
"""
    )
    assert capabilities.requirements(controlling) == [
        "fresh_server",
        "restart",
        "security",
        "server_dir",
        "server_flags",
    ]


def test_requires_adds_what_the_steps_do_not_show():
    planned = case(
        """
name: planned
description: d
requires: [planner, sequence]
steps:
  - call: GenerateTasksFromPRD
    request: {prd_id: p}
"""
    )
    assert capabilities.requirements(planned) == ["planner", "sequence"]


def test_the_schema_rejects_an_unknown_requirement():
    document = {
        "cases": [
            {"name": "x", "description": "d", "requires": ["teleport"], "steps": [{"sleep": 1}]}
        ]
    }
    validator = c.schema.validator(c.messages.SERVICE)
    problems = load.schema_problems(document, pathlib.Path("x.yaml"), validator)
    assert problems and "teleport" in problems[0]


def test_the_schemas_capability_names_are_the_runners():
    document = json.loads((REPO / "conformance" / "cases" / "case.schema.json").read_text())
    assert tuple(document["$defs"]["capability"]["enum"]) == capabilities.NAMES


def test_first_release_clients_skip_a_case_that_needs_a_newer_field_and_say_why():
    runs = plan([EXPECTS_A_SEQUENCE, ADDS_A_TASK], ["python"])
    kept, skipped = capabilities.partition(runs, SERVER, capabilities.V1_0, OWN)
    assert [r.case.name for r in kept] == ["adds_a_task"]
    [skip] = skipped.values()
    assert skip.reasons == (
        ("sequence", "the clients' generated code (v1.0) has no TaskEvent.sequence"),
    )


def test_a_remote_target_refuses_every_control_need_but_a_loopback_address():
    grants = target.remote("127.0.0.1:50051").grants()
    assert grants.why_not("loopback") is None
    assert "does not control this server" in (grants.why_not("fresh_server") or "")
    assert target.remote("10.1.2.3:50051").grants().why_not("loopback")


def test_a_command_without_args_cannot_pass_flags_or_configure_security():
    grants = target.command("server --port {port}").grants()
    assert grants.why_not("server_flags") and grants.why_not("security")
    assert grants.why_not("restart") is None


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("server --data {dir}", "{port}"),
        ("server --port {port} --flags={args}", "{args} must be a word"),
        ("", "empty"),
    ],
)
def test_a_command_that_cannot_work_is_refused_with_the_reason(text, complaint):
    with pytest.raises(target.TargetError, match=complaint.replace("{", r"\{").replace("}", r"\}")):
        target.command(text)


def test_transcripts_of_a_shared_server_count_sequences_from_the_first_seen():
    def events_from(head: int) -> list[dict[str, Any]]:
        transcript = Transcript()
        transcript.add(
            Record(
                at="s1", client="c", kind="headers", trailers={"rigger-head-sequence": str(head)}
            )
        )
        event = pb.TaskEvent(event_id="e", sequence=head + 1)
        transcript.add(Record(at="s2", client="c", kind="events", events=[event]))
        return normalise(transcript, {}, relative_sequences=True)

    assert events_from(0) == events_from(41)
