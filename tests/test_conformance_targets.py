"""The conformance suite against servers it did not configure: requirements, profiles, targets.

`nox -s conformance_target` and `nox -s skew` run the whole suite that way;
these are the fast part: what a case is found to require, which runs a
target takes, a real `rig grpc` started by a command that writes no ready
file, and its profile read through reflection.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
from typing import Any

import pytest
import yaml
from rigger.v1 import rigger_pb2 as pb

from conformance import cases as c
from conformance.cases import load
from conformance.executors.launch import build_commands
from conformance.executors.process import ExecutorPool
from conformance.runner.security import RunSecurity
from conformance.runner.transcript import Record, Transcript, normalise
from conformance.suite.execute import execute
from conformance.suite.plan import plan
from conformance.targets import capabilities, profiles, target
from testkit.serverproc import RIG, ServerProcess

REPO = pathlib.Path(__file__).resolve().parent.parent

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


# --- a real server, started by a command that writes no ready file --------------------


def rig_command() -> str:
    return " ".join([*RIG, "grpc", "--port", "{port}", "--db", "{dir}/tasks.db", "{args}"])


def test_a_command_server_is_ready_without_a_ready_file_and_stops_with_its_group(tmp_path):
    template = target.CommandTemplate.parse(rig_command())
    server = target.CommandProcess(template, tmp_path, extra_args=("--buffer", "3"))
    server.start()
    try:
        assert "--buffer 3" in server.read_log()
        assert target.answers(server.address, None, None) is None
        group = server.proc.pid if server.proc else 0
    finally:
        server.stop()
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)  # signal 0: is anyone left in the group?


def test_a_command_that_exits_early_is_reported_with_its_output(tmp_path):
    template = target.CommandTemplate.parse(
        f"{sys.executable} -c 'import sys; print(\"no port for me\"); sys.exit(3)' {{port}}"
    )
    with pytest.raises(RuntimeError, match=r"(?s)exited with 3 before serving.*no port for me"):
        target.CommandProcess(template, tmp_path).start(timeout=20)


def test_the_profile_of_our_server_has_every_capability(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    profile = profiles.learn(target.command(rig_command()), None, (), workdir)
    assert profile.capabilities() == capabilities.HEAD.capabilities() | {
        "health",
        "reflection",
        "planner",
    }
    assert profile.source.startswith("reflection at 127.0.0.1:")


def test_a_named_profile_replaces_what_reflection_says(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    profile = profiles.learn(target.own(), "v1.0", (), workdir)
    assert profile.schema is capabilities.V1_0
    assert "sequence" not in profile.capabilities()
    assert profile.source == "--profile v1.0"


# --- a running server with mTLS and a token, reached through --target's options -------


@pytest.fixture
def guarded_server(tmp_path):
    pki = RunSecurity.create(tmp_path / "pki", "mutual", ("tok-a",))
    server = ServerProcess(
        tmp_path, extra_args=pki.server_args, credentials=pki.channel_credentials(), token="tok-a"
    ).start()
    yield server, pki
    server.stop()


async def _run_once(chosen: target.Target, workdir: pathlib.Path) -> Any:
    pool = ExecutorPool(build_commands(("python",)))
    try:
        [result] = await execute(plan([ADDS_A_TASK], ["python"]), pool, workdir, target=chosen)
    finally:
        await pool.close()
    return result


async def test_a_target_with_mtls_and_a_token_is_reached_with_the_target_options(
    guarded_server, tmp_path
):

    server, pki = guarded_server
    security = target.ClientSecurity(pki.ca.cert, pki.client.cert, pki.client.key, "tok-a")
    result = await _run_once(target.remote(f"localhost:{server.port}", security), tmp_path / "w")
    assert result.passed, result.problems


async def test_a_target_refuses_clients_without_its_token(guarded_server, tmp_path):
    server, pki = guarded_server
    security = target.ClientSecurity(pki.ca.cert, pki.client.cert, pki.client.key, "tok-wrong")
    result = await _run_once(target.remote(f"localhost:{server.port}", security), tmp_path / "w")
    assert "UNAUTHENTICATED" in "\n".join(result.problems)
