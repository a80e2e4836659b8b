"""The suite's parts in process: case files, coverage, the plan, verdicts and known failures.

Nothing here runs a case; tests/test_conformance.py runs the suite against
the real server and every mutant."""

from __future__ import annotations

import pathlib
import re

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from rigger.v1 import rigger_pb2

from conformance import cases as c
from conformance import cli as cli
from conformance.cases import coverage, load, schema
from conformance.cases.messages import SERVICE
from conformance.executors.launch import LANGUAGES
from conformance.runner import judge
from conformance.runner.case_run import RunResult, write_files
from conformance.selftest import mutants
from conformance.suite import known_failing, verdicts
from conformance.suite.plan import plan

REPO = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def all_cases() -> list[c.Case]:
    # A mutant that loses an event makes its case wait out the whole window
    # for it; a shorter one keeps these tests fast (the real server's events
    # arrive within milliseconds).
    return load.load_cases(within_ms=3000)


def case_named(cases: list[c.Case], name: str) -> c.Case:
    return next(case for case in cases if case.name == name)


def test_every_mutant_names_a_case_that_exists(all_cases):
    names = {case.name for case in all_cases}
    assert {m: x.caught_by for m, x in mutants.MUTANTS.items() if x.caught_by not in names} == {}


def test_the_readme_lists_every_mutant_and_its_catching_case():
    readme = (REPO / "conformance" / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| [^|]* \| `(\w+)`: [^|]* \| `(\w+)` \|$", readme, re.MULTILINE))
    assert rows == {name: m.caught_by for name, m in mutants.MUTANTS.items()}


def service_with_extra_method(name: str):
    """RiggerService as in the proto, plus one method no case knows about."""
    proto = descriptor_pb2.FileDescriptorProto()
    rigger_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.service[0].method.add(
        name=name, input_type=".rigger.v1.GetTaskRequest", output_type=".rigger.v1.GetTaskResponse"
    )
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(proto.SerializeToString())
    return pool.FindServiceByName("rigger.v1.RiggerService")


def coverage_problems(cases, *, service=SERVICE, documented=None, known=()):
    return coverage.check(
        service,
        cases,
        plan(cases, LANGUAGES),
        LANGUAGES,
        documented if documented is not None else coverage.load_documented(),
        known,
    )


def test_the_cases_cover_every_method_client_and_documented_code(all_cases):
    assert coverage_problems(all_cases) == []


def test_there_are_at_least_sixty_cases(all_cases):
    assert len(all_cases) >= 60


def test_a_method_added_to_the_service_fails_coverage(all_cases):
    problems = coverage_problems(all_cases, service=service_with_extra_method("ArchiveAll"))
    assert any("ArchiveAll has no entry in documented_codes.yaml" in p for p in problems)
    assert any("ArchiveAll has no case for client(s) go, python, ts" in p for p in problems)


def test_a_documented_code_without_a_case_fails_coverage(all_cases):
    documented = coverage.load_documented()
    documented["GetTask"]["PERMISSION_DENIED"] = "a rule someone wrote down"
    problems = coverage_problems(all_cases, documented=documented)
    assert problems == [
        "GetTask is documented to return PERMISSION_DENIED (a rule someone wrote down) "
        "but no case expects it"
    ]


def test_a_case_expecting_an_undocumented_code_fails_coverage(all_cases):
    documented = coverage.load_documented()
    del documented["UpdateTask"]["ABORTED"]
    problems = coverage_problems(all_cases, documented=documented)
    assert any("expect UpdateTask to return ABORTED, which" in p for p in problems)


def test_known_failing_runs_do_not_count_as_coverage(all_cases):
    every_parse_prd_case_fails_for_ts = [
        known_failing.Entry("ts", case.name, "pretend")
        for case in all_cases
        if any("ParsePRD" in methods for methods in coverage.methods_by_role(case).values())
    ]
    problems = coverage_problems(all_cases, known=every_parse_prd_case_fails_for_ts)
    assert problems == [
        "RiggerService.ParsePRD has no case for client(s) ts "
        "(none calls it, or every one is known-failing)"
    ]


def result(run, *, problems=(), transcript=None):
    return RunResult(run, list(problems), transcript or [{"kind": "unary", "code": "OK"}], 0.1)


def test_a_run_whose_transcript_differs_from_the_others_fails(all_cases):
    runs = plan([case_named(all_cases, "list_tasks_empty")], LANGUAGES)
    odd = result(runs[2], transcript=[{"kind": "unary", "code": "INTERNAL"}])
    outcomes, errors = verdicts.verdicts(
        [result(runs[0]), result(runs[1]), odd], [], every_case_selected=False
    )
    assert [o.outcome for o in outcomes] == ["passed", "passed", "failed"]
    assert "the clients disagree" in outcomes[2].detail
    assert "INTERNAL" in outcomes[2].detail
    assert errors == []


def test_a_known_failing_run_is_reported_as_such(all_cases):
    runs = plan([case_named(all_cases, "list_tasks_empty")], ["go", "python"])
    entry = known_failing.Entry("go", "list_tasks_*", "issue 1")
    results = [result(r, problems=["broken"] if "go" in r.languages else ()) for r in runs]
    outcomes, errors = verdicts.verdicts(results, [entry], every_case_selected=False)
    by_id = {o.run.id: o.outcome for o in outcomes}
    assert by_id["list_tasks_empty[go]"] == "known-failing"
    assert by_id["list_tasks_empty[python]"] == "passed"
    assert errors == []


def test_a_known_failing_case_that_passes_fails_the_run(all_cases):
    runs = plan([case_named(all_cases, "list_tasks_empty")], ["go"])
    entry = known_failing.Entry("go", "list_tasks_empty", "issue 2")
    outcomes, _ = verdicts.verdicts([result(runs[0])], [entry], every_case_selected=False)
    assert outcomes[0].outcome == "failed"
    assert "but passed: delete the entry" in outcomes[0].detail


def test_a_known_failing_entry_that_matches_no_case_is_an_error(all_cases):
    runs = plan([case_named(all_cases, "list_tasks_empty")], ["go"])
    entry = known_failing.Entry("go", "no_such_case_*", "typo")
    _, errors = verdicts.verdicts([result(runs[0])], [entry], every_case_selected=True)
    assert errors == ["known_failing/go.yaml lists 'no_such_case_*', which matches no case"]


def test_the_matrix_runs_each_language_alone_then_every_mix(all_cases):
    case = case_named(all_cases, "events_follow_a_task_lifecycle")
    ids = [run.id for run in plan([case], ["go", "python"])]
    assert ids == [
        "events_follow_a_task_lifecycle[go]",
        "events_follow_a_task_lifecycle[python]",
        "events_follow_a_task_lifecycle[writer=go,watcher=python]",
        "events_follow_a_task_lifecycle[writer=python,watcher=go]",
    ]


def test_a_fanout_role_is_played_by_every_language_in_one_run(all_cases):
    case = case_named(all_cases, "events_fanout_to_every_language")
    runs = plan([case], LANGUAGES)
    assert len(runs) == len(LANGUAGES)
    watchers = [i for i, role, _ in runs[0].instances() if role == "watcher"]
    assert watchers == ["watcher@go", "watcher@python", "watcher@ts"]


def test_case_files_reject_unknown_keys(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "cases:\n  - name: x\n    description: d\n    steps:\n"
        "      - call: GetTask\n        requets: {task_id: a}\n"
    )
    with pytest.raises(c.CaseError, match=r"unknown keys \['requets'\]"):
        load.load_cases(tmp_path)


def test_case_files_reject_unknown_fields(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "cases:\n  - name: x\n    description: d\n    steps:\n"
        "      - call: AddTask\n        request: {titel: a}\n"
    )
    with pytest.raises(c.CaseError, match="AddTaskRequest has no field 'titel'"):
        load.load_cases(tmp_path)


@pytest.mark.parametrize(
    ("security", "step", "error"),
    [
        ("{tls: yes}", "{}", "case 'x': security.tls: got true; expected none, server or mutual"),
        ("{tokens: [a, a]}", "{}", r"security.tokens: lists an item twice"),
        ("{}", "{}", "security: got {}; expected `tls: server|mutual`, `tokens`, or both"),
        ("{tls: server}", "{certificate: none}", "only `security.tls: mutual` uses certificates"),
        ("{tls: server}", "{token: t}", "a token needs `security.tokens`"),
        ("{tls: mutual}", "{certificat: none}", r"unknown keys \['certificat'\]"),
        (None, "{token: null}", "`connect` needs a case-level `security:` block"),
    ],
)
def test_security_blocks_and_connect_steps_are_checked(tmp_path, security, step, error):
    block = f"    security: {security}\n" if security else ""
    (tmp_path / "bad.yaml").write_text(
        f"cases:\n  - name: x\n    description: d\n{block}    steps:\n"
        f"      - connect: {step}\n      - call: ListTasks\n"
    )
    with pytest.raises(c.CaseError, match=error):
        load.load_cases(tmp_path)


def test_an_unknown_enum_name_is_a_malformed_case_not_a_failed_run(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "cases:\n  - name: x\n    description: d\n    steps:\n"
        "      - call: UpdateTask\n        request: {task_id: a, status: DONE}\n"
    )
    with pytest.raises(c.CaseError, match=r"case 'x': steps\[1\] \(call\)\.request\.status: "):
        load.load_cases(tmp_path)


OUTSIDE = "/tmp/rigger-conformance-outside"


def write_case(directory: pathlib.Path, body: str) -> None:
    (directory / "case.yaml").write_text(
        f"cases:\n  - name: x\n    description: d\n{body}    steps:\n      - call: ListTasks\n"
    )


@pytest.mark.parametrize(
    ("server_args", "complaint"),
    [
        (f"[--ready-file, {OUTSIDE}]", f"--ready-file {OUTSIDE!r}"),
        (f"[--ready-file={OUTSIDE}]", f"--ready-file {OUTSIDE!r}"),
        (f"[--ready, {OUTSIDE}]", f"--ready {OUTSIDE!r}"),  # argparse takes a prefix
        ("[--ready-file, ../../ready.json]", "--ready-file '../../ready.json'"),
        ("[--db, /var/tmp/tasks.db]", "--db '/var/tmp/tasks.db'"),
        ("[--db, project/../../../tasks.db]", "--db 'project/../../../tasks.db'"),
        ("[--tls-cert, /etc/ssl/cert.pem]", "--tls-cert '/etc/ssl/cert.pem'"),
        ("[--tls-key, ../../key.pem]", "--tls-key '../../key.pem'"),
        ("[--tls-client-ca, /etc/ca.pem]", "--tls-client-ca '/etc/ca.pem'"),
        ("[--auth-token-file, /etc/tokens]", "--auth-token-file '/etc/tokens'"),
    ],
)
def test_a_server_flag_naming_a_path_outside_the_run_is_a_malformed_case(
    tmp_path, server_args, complaint
):
    write_case(tmp_path, f"    server_args: {server_args}\n")
    with pytest.raises(c.CaseError) as raised:
        load.load_cases(tmp_path)
    message = str(raised.value)
    assert message.startswith("case.yaml: case 'x': server_args: "), message
    assert complaint in message
    assert "outside the run's directory" in message


def test_a_database_url_in_a_case_is_a_malformed_case(tmp_path):
    write_case(tmp_path, "    server_args: [--db, 'postgresql://db.example/rigger']\n")
    with pytest.raises(c.CaseError, match=r"case 'x': server_args: --db .*the runner"):
        load.load_cases(tmp_path)


def test_a_server_path_through_a_symlink_of_the_case_that_leads_out_is_a_malformed_case(
    tmp_path,
):
    # `up` is <run>, so up/../../x is two levels above it, though it reads as ../x.
    write_case(
        tmp_path,
        "    files: {up: {symlink: ..}}\n    server_args: [--ready-file, up/../../ready.json]\n",
    )
    with pytest.raises(c.CaseError, match=r"server_args: --ready-file 'up/../../ready.json'"):
        load.load_cases(tmp_path)


@pytest.mark.parametrize(
    ("files", "complaint"),
    [
        ("{../../x.md: text}", "files: '../../x.md' leads outside the run's directory"),
        ("{docs/../../../x.md: text}", "files: 'docs/../../../x.md' leads outside"),
        ("{out: {symlink: /etc}}", "files: 'out': its symlink '/etc' leads outside"),
        ("{out: {symlink: ../../x}}", "files: 'out': its symlink '../../x' leads outside"),
        ("{up: {symlink: ..}, up/../../x.md: text}", "files: 'up/../../x.md' leads outside"),
        (
            "{up: {symlink: ..}, up/out: {symlink: ../x}}",
            "files: 'up/out': its symlink '../x' leads outside",
        ),
        ("{loop: {symlink: loop}, loop/x: text}", "files: 'loop/x' goes round a loop of symlinks"),
    ],
)
def test_a_file_or_symlink_leading_outside_the_run_is_a_malformed_case(tmp_path, files, complaint):
    write_case(tmp_path, f"    files: {files}\n")
    with pytest.raises(c.CaseError, match=re.escape(f"case.yaml: case 'x': {complaint}")):
        load.load_cases(tmp_path)


def test_paths_inside_the_run_are_accepted(tmp_path):
    write_case(
        tmp_path,
        "    files: {../beside.md: text, docs/up.md: {symlink: ../../beside.md},"
        " run: {symlink: ..}}\n"
        "    server_args: [--ready-file, ../ready.json, --db=data/tasks.db,"
        " --auth-token-file, run/tokens, --buffer, '1']\n"
        "    requires: [{server_dir: files beside the root}, {server_flags: flags}]\n",
    )
    [case] = load.load_cases(tmp_path)
    assert case.server_args[:2] == ("--ready-file", "../ready.json")


def test_the_suite_refuses_a_case_naming_a_path_outside_the_run_before_running_any(
    tmp_path, monkeypatch, capsys
):
    elsewhere = tmp_path / "elsewhere.json"
    write_case(tmp_path, f"    server_args: [--ready-file, {elsewhere}]\n")
    original = load.load_cases
    monkeypatch.setattr(load, "load_cases", lambda **options: original(tmp_path, **options))
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert f"case 'x': server_args: --ready-file {str(elsewhere)!r}" in err
    assert not elsewhere.exists()


@pytest.mark.parametrize(
    "spec",
    [c.FileSpec(path="../../x.md", text="x"), c.FileSpec(path="out", symlink="../../x")],
    ids=["file", "symlink"],
)
def test_writing_a_case_file_that_leads_outside_the_run_is_refused_again(tmp_path, spec):
    project = tmp_path / "run" / "project"
    project.mkdir(parents=True)
    with pytest.raises(ValueError, match="leads outside the run's directory"):
        write_files(project, [spec])
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["project", "run"]


def test_every_path_flag_of_rig_grpc_is_confined():
    from rigger_server.cli import build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command")
    grpc_flags = commands.choices["grpc"]._actions
    takes_path = {
        action.option_strings[0]
        for action in grpc_flags
        if action.type is pathlib.Path or (action.metavar or "").startswith(("PATH", "FILE"))
    }
    assert takes_path == set(load.PATH_FLAGS)


def test_the_published_messages_schema_matches_the_proto():
    assert not schema.stale(), "run `python -m conformance.cases.schema` and commit the result"


def test_an_ordered_within_that_matches_no_event_fails():
    events = [rigger_pb2.TaskEvent(task=rigger_pb2.Task(title=f"task {i}")) for i in range(3)]
    pattern = r"^(?P<group>w\d)-(?P<index>\d+)$"
    assert judge.check_ordered_within(events, "task.title", pattern, "events") != []
    assert (
        judge.check_ordered_within(events, "task.title", r"(?P<group>task) (?P<index>\d)", "e")
        == []
    )


def test_only_the_latest_invocations_failed_runs_are_kept(all_cases, tmp_path):
    runs = plan([case_named(all_cases, "list_tasks_empty")], ["go", "python"])
    target = tmp_path / "failed-runs"
    (target / "0000-an-older-run").mkdir(parents=True)
    results = []
    for index, run in enumerate(runs):
        directory = tmp_path / "scratch" / f"{index:04d}-{run.id}"
        directory.mkdir(parents=True)
        results.append(RunResult(run, ["broken"] if index else [], [], 0.1, directory=directory))
    outcomes, _ = verdicts.verdicts(results, [], every_case_selected=False)
    said = cli._keep_failed_runs(outcomes, target)
    assert sorted(p.name for p in target.iterdir()) == ["0001-list_tasks_empty[python]"]
    assert said.startswith("the directories of 1 failed run ")
