"""What a case requires, what a target grants, and which runs it can take; in process.

tests/test_conformance_targets.py runs the suite against servers started
by a command and already running."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess
from typing import Any

import pytest
import yaml
from rigger.v1 import rigger_pb2 as pb

from conformance import cases as c
from conformance.cases import load
from conformance.runner import shared
from conformance.runner.transcript import Record, Transcript, normalise
from conformance.suite.plan import plan
from conformance.targets import capabilities, profiles, target

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


def test_an_expected_sequence_requires_sequence_counted_from_the_logs_head():
    assert capabilities.requirements(EXPECTS_A_SEQUENCE) == ["log_head", "sequence"]


def test_a_case_using_only_first_release_fields_requires_nothing():
    assert capabilities.requirements(ADDS_A_TASK) == []


def test_a_resume_point_taken_from_a_capture_needs_no_logs_head():
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


def test_server_steps_flags_files_and_security_need_control_and_store_listings_do_not():
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
        "files",
        "restart",
        "security",
        "server_flags",
    ]


def test_files_beside_the_project_root_need_the_directory_around_it():
    beside = case(
        """
name: beside
description: d
files: {../outside.md: "# T\\n", link.md: {symlink: ../outside.md}}
steps:
  - call: ParsePRD
    request: {prd_file_path: ../outside.md}
"""
    )
    assert capabilities.requirements(beside) == ["server_dir"]


def test_naming_the_files_folder_or_the_root_needs_files():
    named = case(
        """
name: named
description: d
steps:
  - call: ParsePRD
    request: {prd_file_path: "${files}/missing.md"}
"""
    )
    assert capabilities.requirements(named) == ["files"]


def write_cases(directory: pathlib.Path, text: str) -> pathlib.Path:
    directory.mkdir(exist_ok=True)
    (directory / "cases.yaml").write_text(text)
    return directory


@pytest.mark.parametrize(
    ("header", "need"),
    [
        ('server_args: [--buffer, "1"]', "server_flags"),
        ("security: {tokens: [tok-a]}", "security"),
        ("files: {../outside.md: x}", "server_dir"),
        ("requires: [fresh_server]", "fresh_server"),
    ],
)
def test_a_need_no_shared_server_can_meet_must_say_why(tmp_path, header, need):
    directory = write_cases(
        tmp_path / "cases",
        f"cases:\n  - name: x\n    description: d\n    {header}\n"
        "    steps:\n      - call: ListTasks\n",
    )
    with pytest.raises(c.CaseError, match=rf"case 'x': needs {need}: say why"):
        load.load_cases(directory)


def test_a_stated_reason_is_shown_with_the_skip(tmp_path):
    directory = write_cases(
        tmp_path / "cases",
        "cases:\n  - name: x\n    description: d\n"
        "    requires: [{restart: it stops the server mid-stream}]\n"
        "    steps:\n      - server: restart\n",
    )
    [loaded] = load.load_cases(directory)
    _, skipped = capabilities.partition(
        plan([loaded], ["python"]), SERVER, capabilities.HEAD, target.remote("127.0.0.1:1").grants()
    )
    [skip] = skipped.values()
    assert skip.text.startswith("needs restart (it stops the server mid-stream): --target")


def test_a_listing_filtered_by_a_captured_value_is_a_malformed_case(tmp_path):
    directory = write_cases(
        tmp_path / "cases",
        "cases:\n  - name: x\n    description: d\n    steps:\n"
        "      - {call: AddTask, request: {title: t, assignee: a}, capture: t}\n"
        '      - {call: ListTasks, request: {assignee: "${t.task.assignee}"}}\n',
    )
    with pytest.raises(c.CaseError, match=r"ListTasks\.assignee must be written out"):
        load.load_cases(directory)


def test_a_request_naming_a_file_of_the_case_without_its_folder_is_a_malformed_case(tmp_path):
    directory = write_cases(
        tmp_path / "cases",
        "cases:\n  - name: x\n    description: d\n    files: {docs/prd.md: '# T'}\n"
        "    steps:\n      - {call: ParsePRD, request: {prd_file_path: docs/prd.md}}\n",
    )
    with pytest.raises(c.CaseError, match=r"name it `\$\{files\}/docs/prd.md`"):
        load.load_cases(directory)


def test_every_case_that_a_shared_server_cannot_run_says_why():
    for loaded in load.load_cases():
        assert capabilities.unexplained(loaded) == [], loaded.name


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
    assert "--target-root" in (grants.why_not("files") or "")
    assert target.remote("10.1.2.3:50051").grants().why_not("loopback")


def test_a_remote_target_with_its_root_takes_files_but_never_files_beside_the_root(tmp_path):
    grants = target.remote("127.0.0.1:50051", root=tmp_path).grants()
    assert grants.why_not("files") is None
    assert grants.why_not("server_dir")


def test_a_remote_target_counts_sequences_from_the_head_only_where_subscriptions_name_it():
    named = dataclasses.replace(SERVER, head_sequence=True)
    assert target.remote("127.0.0.1:1").grants(named).why_not("log_head") is None
    why = target.remote("127.0.0.1:1").grants(SERVER).why_not("log_head") or ""
    assert "rigger-head-sequence" in why
    assert target.command("s --port {port}").grants(SERVER).why_not("log_head") is None


def test_a_missing_target_root_is_refused(tmp_path):
    with pytest.raises(target.TargetError, match="no such directory"):
        target.remote("127.0.0.1:1", root=tmp_path / "nowhere")


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


def test_transcripts_of_a_shared_server_count_sequences_from_the_runs_base():
    def events_from(head: int) -> list[dict[str, Any]]:
        transcript = Transcript()
        transcript.add(
            Record(
                at="s1", client="c", kind="headers", trailers={"rigger-head-sequence": str(head)}
            )
        )
        event = pb.TaskEvent(event_id="e", sequence=head + 1)
        transcript.add(Record(at="s2", client="c", kind="events", events=[event]))
        transcript.add(
            Record(
                at="s3",
                client="c",
                kind="end",
                code="INVALID_ARGUMENT",
                message=f"after_sequence: {head + 5} is beyond the newest event ({head + 1}); "
                "titles are at most 131072 characters",
            )
        )
        return normalise(transcript, {}, sequences=(head, head + 5))

    # Numbers beyond the run's sequences (a limit) stay as they are.
    assert events_from(0) == events_from(41) == events_from(131080)


# --- --target-cmd: a list of words, or a shell command line ---------------------------

HOSTILE_DIR = pathlib.Path("/tmp/it's a $(touch pwned) `dir`; rm -rf ~ &&")
HOSTILE_ARGS = ("--ollama-url", "http://127.0.0.1:9/?a=1&b=$(id)", "--name", "it's")


def test_a_command_of_words_runs_without_a_shell_and_args_become_words():
    template = target.CommandTemplate.parse("./server --port {port} --data {dir}/db {args}")
    assert not template.shell
    argv = template.argv(7000, HOSTILE_DIR, HOSTILE_ARGS, pathlib.Path("/work"))
    assert argv == [
        "/work/server",
        "--port",
        "7000",
        "--data",
        f"{HOSTILE_DIR}/db",
        *HOSTILE_ARGS,
    ]


@pytest.mark.parametrize(
    "text",
    [
        "rig init >/dev/null && exec rig grpc --port {port} {args}",
        "sh -c 'rig init >/dev/null && exec rig grpc --port {port} {args}'",
        "bash -ec 'cd {dir} && exec ./server --port {port} {args}'",
    ],
)
def test_a_shell_command_line_is_accepted_with_args_anywhere_in_it(text):
    template = target.CommandTemplate.parse(text)
    assert template.shell and template.takes_flags


def test_a_shell_command_line_gets_every_value_quoted_for_the_shell(tmp_path):
    template = target.CommandTemplate.parse(
        "printf '%s\\n' {port} {dir} {args} > {dir}/out && echo done"
    )
    directory = tmp_path / "it's a $(touch pwned) `x`; y &&"
    directory.mkdir()
    argv = template.argv(7000, directory, HOSTILE_ARGS, tmp_path)
    assert argv[:2] == ["sh", "-c"]
    done = subprocess.run(argv, cwd=directory, capture_output=True, text=True, check=True)
    assert done.stdout == "done\n"
    printed = (directory / "out").read_text().splitlines()
    assert printed == ["7000", str(directory), *HOSTILE_ARGS]
    assert not (directory / "pwned").exists() and not (tmp_path / "pwned").exists()


def test_the_script_of_an_explicit_sh_c_gets_quoted_values_too(tmp_path):
    template = target.CommandTemplate.parse("sh -c 'printf \"%s\\n\" {dir} {args}' {port}")
    directory = tmp_path / "a b; c"
    directory.mkdir()
    argv = template.argv(7000, directory, HOSTILE_ARGS, tmp_path)
    assert argv[-1] == "7000"
    done = subprocess.run(argv, cwd=directory, capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == [str(directory), *HOSTILE_ARGS]


@pytest.mark.parametrize(
    "text",
    [
        'exec server --port {port} --db "{dir}/tasks.db" && true',
        "sh -c 'exec server --port {port} --db \"{dir}/tasks.db\"'",
    ],
)
def test_a_placeholder_inside_quotes_in_a_shell_command_line_is_refused(text):
    with pytest.raises(target.TargetError, match=r"write \{dir\} outside quotes"):
        target.CommandTemplate.parse(text)


def test_a_mutant_name_goes_into_a_shell_command_line_quoted():
    template = target.CommandTemplate.parse("exec x --mutant {mutant} --port {port} || true")
    assert (
        "--mutant no_created"
        in template.with_mutant("no_created").argv(1, pathlib.Path("/d"), (), pathlib.Path("/"))[2]
    )


# --- a shared server: what the run itself created ---------------------------------------


def test_literal_sequences_count_from_the_base_and_references_stay():
    written = {
        "after_sequence": 0,
        "events": [{"sequence": 3}, {"sequence": "${e.sequence}"}],
        "headers": {"rigger-head-sequence": "2", "rigger-other": "2"},
        "far": {"after_sequence": "18446744073709551615"},
        "title": 5,
    }
    assert shared.shift(written, 100) == {
        "after_sequence": 100,
        "events": [{"sequence": 103}, {"sequence": "${e.sequence}"}],
        "headers": {"rigger-head-sequence": "102", "rigger-other": "2"},
        "far": {"after_sequence": "18446744073709551615"},
        "title": 5,
    }
    assert shared.shift(written, 0) is written


def listing(titles: list[str], total: int) -> pb.ListTasksResponse:
    return pb.ListTasksResponse(tasks=[pb.Task(title=t) for t in titles], total_count=total)


@pytest.mark.parametrize(
    ("request_", "now", "sent"),
    [
        (pb.ListTasksRequest(), 13, pb.ListTasksRequest(limit=3)),
        (pb.ListTasksRequest(limit=0), 13, pb.ListTasksRequest(limit=3)),
        (pb.ListTasksRequest(limit=2), 13, pb.ListTasksRequest(limit=2)),
        (pb.ListTasksRequest(limit=2, offset=2), 13, pb.ListTasksRequest(limit=1, offset=2)),
        (pb.ListTasksRequest(offset=9), 13, pb.ListTasksRequest(offset=13)),
        (pb.ListTasksRequest(), 10, pb.ListTasksRequest(offset=10)),
    ],
)
def test_a_listing_is_narrowed_to_the_runs_own_tasks(request_, now, sent):
    baseline = shared.Baseline(counts={(None, None): 10})
    assert shared.window(baseline, request_, now) == sent


def test_a_listing_is_judged_without_the_tasks_that_were_there_before():
    baseline = shared.Baseline(counts={(None, "Alice"): 4})
    request_ = pb.ListTasksRequest(assignee="Alice", limit=2, offset=1)
    seen, problem = shared.view(baseline, request_, listing(["b", "old"], 6))
    assert (problem, list(seen.tasks), seen.total_count) == ("", [pb.Task(title="b")], 2)


def test_a_listing_that_lost_tasks_it_had_is_a_problem():
    baseline = shared.Baseline(counts={(None, None): 4})
    _, problem = shared.view(baseline, pb.ListTasksRequest(), listing([], 3))
    assert "below the 4 tasks that matched" in problem


def test_a_filter_not_counted_before_the_run_is_judged_as_answered():
    answer = listing(["x"], 7)
    assert shared.view(shared.Baseline(), pb.ListTasksRequest(status=2), answer) == (answer, "")


def test_a_profile_says_what_it_lacks_of_this_checkouts_server():
    first_release = capabilities.ServerProfile(
        capabilities.V1_0, frozenset({"health"}), frozenset(), "a test"
    )
    missing = profiles.lacks(first_release)
    assert {"sequence", "batches", "planner", "reflection"} <= set(missing)
    assert "schema:GenerateTasksFromPRDResponse.planner" in missing
    assert "health" not in missing
    full = capabilities.ServerProfile(
        capabilities.HEAD, frozenset({"health", "reflection"}), frozenset({"planner"}), "a test"
    )
    assert profiles.lacks(full) == []
