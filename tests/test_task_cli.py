"""The task commands (`rig add`, `list`, `show`, ...) against a real `rig grpc`.

Each command's --json output is checked against what the gRPC API itself
answers, in the JSON form of console/jsonform.py.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import get_args

import docblocks
import pytest
from rigcli import TOKEN, env_for, guarded_server, rig, rig_json
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from rigger_server.console import exitcodes, listing, prefixes
from rigger_server.console.jsonform import to_json
from rigger_server.console.statuses import StatusName, names

from testkit.pki import RunSecurity
from testkit.serverproc import RIG, ServerProcess

REPO = pathlib.Path(__file__).resolve().parent.parent
CLI_DOC = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
EXAMPLE_PRD = REPO / "examples" / "PRD.md"


@pytest.fixture(scope="module")
def api(shared_server: ServerProcess) -> Iterator[rigger_pb2_grpc.RiggerServiceStub]:
    """A blocking stub on the shared server: what the commands' output is checked against."""
    with shared_server.channel() as channel:
        yield rigger_pb2_grpc.RiggerServiceStub(channel)


def _someone() -> str:
    """An assignee no other test uses, so a listing holds only this test's tasks."""
    return f"who-{uuid.uuid4().hex[:8]}"


def _add(api, title: str, **fields) -> pb.Task:
    return api.AddTask(pb.AddTaskRequest(title=title, **fields)).task


def _task_json(api, task_id: str) -> dict:
    return to_json(api.GetTask(pb.GetTaskRequest(task_id=task_id)).task)


def _copy_prd(root: pathlib.Path) -> str:
    """The example PRD under a name of its own (a PRD file's tasks exist once)."""
    name = f"prd-{uuid.uuid4().hex[:8]}.md"
    shutil.copy(EXAMPLE_PRD, root / name)
    return name


# --- the JSON form -----------------------------------------------------------


def test_the_json_form_keeps_the_contracts_names_and_numbers():
    task = pb.Task(id="t", title="x", status=pb.TASK_STATUS_TODO, version=2**53)
    value = to_json(task)
    assert list(value) == [f.name for f in pb.Task.DESCRIPTOR.fields]
    assert value["status"] == "TASK_STATUS_TODO"
    assert value["version"] == 2**53  # a number, not protobuf JSON's string
    assert value["assignee"] is None  # optional and unset: null, not absent
    assert value["subtask_ids"] == []
    event = to_json(pb.TaskEvent(sequence=7, metadata={"k": "v"}, task=task))
    assert event["metadata"] == {"k": "v"}
    assert event["task"] == value
    assert event["sequence"] == 7


def test_the_statuses_offered_to_agents_are_the_contracts():
    assert list(get_args(StatusName)) == names()


# --- add, list, show ---------------------------------------------------------


def test_add_prints_the_task_as_the_api_has_it(shared_server, api):
    who = _someone()
    [task] = rig_json(
        shared_server, "add", "Write", "the", "notes", "--assignee", who, "--due-date", "2026-01-31"
    )
    assert task["title"] == "Write the notes"
    assert task["assignee"] == who
    assert task == _task_json(api, task["id"])


def test_add_makes_a_subtask_of_a_parent_named_by_prefix(shared_server, api):
    parent = _add(api, "parent")
    [child] = rig_json(shared_server, "add", "child", "--parent-id", parent.id[:8])
    assert child["parent_task_id"] == parent.id


def test_list_prints_what_list_tasks_returns(shared_server, api):
    who = _someone()
    for title in ("one", "two", "three"):
        _add(api, title, assignee=who)
    expected = api.ListTasks(pb.ListTasksRequest(assignee=who)).tasks
    assert rig_json(shared_server, "list", "--assignee", who) == [to_json(t) for t in expected]
    window = api.ListTasks(pb.ListTasksRequest(assignee=who, limit=1, offset=1)).tasks
    assert rig_json(shared_server, "list", "--assignee", who, "--limit", "1", "--offset", "1") == [
        to_json(t) for t in window
    ]


def test_list_filters_by_status(shared_server, api):
    who = _someone()
    busy = _add(api, "busy", assignee=who)
    _add(api, "idle", assignee=who)
    api.UpdateTask(pb.UpdateTaskRequest(task_id=busy.id, status=pb.TASK_STATUS_IN_PROGRESS))
    listed = rig_json(shared_server, "list", "--assignee", who, "--status", "in-progress")
    assert [t["id"] for t in listed] == [busy.id]


def test_list_reads_every_page_of_a_long_listing(shared_server, api):
    who = _someone()
    for n in range(2 * listing.PAGE + 3):
        _add(api, f"task {n}", assignee=who)
    expected = [t.id for t in api.ListTasks(pb.ListTasksRequest(assignee=who)).tasks]
    listed = [t["id"] for t in rig_json(shared_server, "list", "--assignee", who)]
    assert listed == expected


def test_list_sorts_by_the_first_releases_keys(shared_server, api):
    who = _someone()
    late = _add(api, "b late", assignee=who, due_date="2026-03-01")
    undated = _add(api, "a undated", assignee=who)
    soon = _add(api, "C soon", assignee=who, due_date="2026-01-01")
    api.UpdateTask(pb.UpdateTaskRequest(task_id=late.id, status=pb.TASK_STATUS_IN_PROGRESS))

    def ids(*args: str) -> list[str]:
        return [t["id"] for t in rig_json(shared_server, "list", "--assignee", who, *args)]

    assert ids("--sort", "title") == [undated.id, late.id, soon.id]
    assert ids("--sort", "due_date") == [soon.id, late.id, undated.id]
    assert ids("--sort", "status") == [soon.id, undated.id, late.id]
    assert ids("--sort", "updated_at") == [late.id, soon.id, undated.id]
    assert ids("--sort", "created_at") == [soon.id, undated.id, late.id]
    assert ids("--sort", "title", "--limit", "1", "--offset", "1") == [late.id]


def test_the_table_escapes_control_characters_and_cuts_long_titles(shared_server, api):
    who = _someone()
    _add(api, "evil \x1b[2J\u202e title " + "x" * 500, assignee=who)
    result = rig(shared_server, "list", "--assignee", who)
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split() == ["ID", "STATUS", "ASSIGNEE", "DUE", "TITLE"]
    assert "\x1b" not in row and "\u202e" not in row
    assert "evil \\u001b[2J\\u202e title" in row
    assert row.endswith("…")


def test_show_takes_an_unambiguous_prefix(shared_server, api):
    task = _add(api, "shown")
    assert rig_json(shared_server, "show", task.id[:8]) == [_task_json(api, task.id)]
    readable = rig(shared_server, "show", task.id[:8])
    assert readable.returncode == 0, readable.stderr
    assert re.search(rf"^id: +{task.id}$", readable.stdout, re.M)
    assert re.search(r"^status: +TODO$", readable.stdout, re.M)


def test_a_prefix_finds_archived_tasks_too(shared_server, api):
    task = _add(api, "archived soon")
    api.DeleteTask(pb.DeleteTaskRequest(task_id=task.id))
    [shown] = rig_json(shared_server, "show", task.id[:8])
    assert shown["status"] == "TASK_STATUS_ARCHIVED"


def test_an_id_no_task_has_exits_4_with_the_servers_message(shared_server):
    result = rig(shared_server, "show", "no-such-task")
    assert result.returncode == exitcodes.NOT_FOUND.code
    assert "NOT_FOUND" in result.stderr and "no-such-task" in result.stderr
    unmatched = rig(shared_server, "show", "0000000f")
    assert unmatched.returncode == exitcodes.NOT_FOUND.code
    assert "0000000f" in unmatched.stderr


def test_a_prefix_shorter_than_four_characters_is_refused(shared_server, api):
    task = _add(api, "short prefix")
    result = rig(shared_server, "show", task.id[:3])
    assert result.returncode == exitcodes.USAGE.code
    assert f"{prefixes.MIN_PREFIX} characters" in result.stderr


def test_an_ambiguous_prefix_fails_naming_the_candidates(server):
    with server.channel() as channel:
        api = rigger_pb2_grpc.RiggerServiceStub(channel)
        by_prefix: dict[str, list[str]] = {}
        # Two random ids share their first four characters after a few hundred.
        for _ in range(listing.SCAN_LIMIT):
            task = _add(api, "crowd")
            by_prefix.setdefault(task.id[:4], []).append(task.id)
            if len(by_prefix[task.id[:4]]) == 2:
                break
    prefix = next(p for p, ids in by_prefix.items() if len(ids) == 2)
    result = rig(server, "show", prefix)
    assert result.returncode == exitcodes.AMBIGUOUS.code
    for task_id in by_prefix[prefix]:
        assert task_id in result.stderr
    longer = by_prefix[prefix][0][:12]
    assert rig(server, "show", longer).returncode == 0


@pytest.mark.slow
def test_prefixes_and_sorts_stop_at_the_scan_limit(server):
    # Two PRDs: one answer with all the tasks would pass a client's 4 MiB receive limit.
    half = listing.SCAN_LIMIT // 2
    for part in range(2):
        tasks = "".join(f"- [ ] task {n}\n" for n in range(half))
        (server.root / f"many{part}.md").write_text(f"# Many {part}\n\n## Tasks\n\n{tasks}")
        assert rig(server, "generate", f"many{part}.md").returncode == 0
    [oldest] = rig_json(server, "list", "--offset", str(listing.SCAN_LIMIT - 1))
    assert rig_json(server, "show", oldest["id"][:8])[0]["id"] == oldest["id"]
    assert rig(server, "list", "--sort", "title", "--limit", "1").returncode == 0
    rig(server, "add", "one too many")
    refused = rig(server, "show", oldest["id"][:8])
    assert refused.returncode == exitcodes.AMBIGUOUS.code
    assert "give the full id" in refused.stderr
    assert rig(server, "show", oldest["id"]).returncode == 0
    unsorted = rig(server, "list", "--sort", "title", "--limit", "1")
    assert unsorted.returncode == exitcodes.EXHAUSTED.code
    assert "--sort created_at" in unsorted.stderr
    assert len(rig_json(server, "list")) == listing.SCAN_LIMIT + 1  # the server's order pages on


# --- update, delete ------------------------------------------------------------


def test_update_changes_the_fields_given(shared_server, api):
    task = _add(api, "old title", assignee="someone", due_date="2026-01-01")
    [updated] = rig_json(
        shared_server,
        "update",
        task.id[:8],
        "--status",
        "in_progress",
        "--assignee",
        "",
        "--title",
        "new title",
    )
    assert updated == _task_json(api, task.id)
    assert updated["status"] == "TASK_STATUS_IN_PROGRESS"
    assert updated["assignee"] is None
    assert updated["title"] == "new title"
    assert updated["due_date"] == "2026-01-01"


def test_update_with_nothing_to_change_is_refused(shared_server, api):
    task = _add(api, "unchanged")
    result = rig(shared_server, "update", task.id)
    assert result.returncode == exitcodes.USAGE.code
    assert "nothing to change" in result.stderr


def test_update_at_a_stale_version_exits_6(shared_server, api):
    task = _add(api, "raced")
    result = rig(shared_server, "update", task.id, "--title", "late", "--expected-version", "9")
    assert result.returncode == exitcodes.CONFLICT.code
    assert "ABORTED" in result.stderr
    assert _task_json(api, task.id)["title"] == "raced"


def test_delete_archives_the_task(shared_server, api):
    task = _add(api, "to archive")
    assert rig_json(shared_server, "delete", task.id[:8]) == [{"task_id": task.id, "success": True}]
    assert _task_json(api, task.id)["status"] == "TASK_STATUS_ARCHIVED"


# --- parse, generate, do ------------------------------------------------------


def test_parse_prints_the_parsed_prd(shared_server, api):
    name = _copy_prd(shared_server.root)
    [parsed] = rig_json(shared_server, "parse", name)
    again = to_json(api.ParsePRD(pb.ParsePRDRequest(prd_file_path=name)))
    assert parsed["prd_id"].startswith("prd-")
    assert {**parsed, "prd_id": None} == {**again, "prd_id": None}


def test_generate_prints_the_tasks_it_created(shared_server, api):
    [parsed] = rig_json(shared_server, "parse", _copy_prd(shared_server.root))
    generated = rig_json(shared_server, "generate", parsed["prd_id"])
    assert len(generated) == 5
    assert generated == [_task_json(api, t["id"]) for t in generated]
    assert {t["source_prd_id"] for t in generated} == {parsed["prd_id"]}


def test_generating_a_prd_twice_exits_6_unless_replacing(shared_server):
    [parsed] = rig_json(shared_server, "parse", _copy_prd(shared_server.root))
    assert rig(shared_server, "generate", parsed["prd_id"]).returncode == 0
    again = rig(shared_server, "generate", parsed["prd_id"])
    assert again.returncode == exitcodes.CONFLICT.code
    assert "ALREADY_EXISTS" in again.stderr
    assert rig(shared_server, "generate", parsed["prd_id"], "--replace").returncode == 0


def test_do_orchestrates_the_task(shared_server, api):
    task = _add(api, "orchestrate me", assignee="ann", due_date="2026-02-02")
    [reply] = rig_json(shared_server, "do", task.id[:8], "--test-type", "multiple_choice")
    assert reply["task"] == _task_json(api, task.id)
    assert reply["task"]["status"] == "TASK_STATUS_ORCHESTRATION_COMPLETE"
    assert reply["result"]["routing_decision"] == "enhance"
    assert reply["result"]["comprehension_test"]["test_type"] == "multiple_choice"
    readable = rig(shared_server, "do", task.id[:8])  # done already: "pass"
    assert readable.returncode == 0, readable.stderr
    assert "decision: pass" in readable.stdout


def test_do_on_an_archived_task_exits_6(shared_server, api):
    task = _add(api, "archived")
    api.DeleteTask(pb.DeleteTaskRequest(task_id=task.id))
    result = rig(shared_server, "do", task.id)
    assert result.returncode == exitcodes.CONFLICT.code
    assert "FAILED_PRECONDITION" in result.stderr


# --- failures and their exit status -------------------------------------------


def test_a_prd_outside_the_project_root_exits_7(shared_server):
    result = rig(shared_server, "parse", "/etc/hostname")
    assert result.returncode == exitcodes.DENIED.code
    assert "PERMISSION_DENIED" in result.stderr


def test_a_value_the_server_refuses_exits_3(shared_server):
    result = rig(shared_server, "add", "due when?", "--due-date", "tomorrow")
    assert result.returncode == exitcodes.INVALID.code
    assert "INVALID_ARGUMENT" in result.stderr


def test_an_oversize_title_gets_the_servers_refusal(shared_server):
    words = ["w" * 1023] * 200  # 200 KiB in all: over the 128 KiB title limit
    result = rig(shared_server, "add", *words)
    assert result.returncode == exitcodes.INVALID.code
    assert "title" in result.stderr


def test_an_unknown_status_is_a_usage_error(shared_server):
    result = rig(shared_server, "list", "--status", "nearly-done")
    assert result.returncode == exitcodes.USAGE.code
    assert "in_progress" in result.stderr


def test_no_server_exits_8_and_says_where_it_looked(shared_server):
    with socket.socket() as taken:  # bound, never listening: connections are refused
        taken.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        result = rig(shared_server, "list", "--addr", address)
    assert result.returncode == exitcodes.UNAVAILABLE.code
    assert "UNAVAILABLE" in result.stderr and address in result.stderr


@pytest.fixture
def guarded(tmp_path) -> Iterator[tuple[ServerProcess, RunSecurity]]:
    """A server that wants a client certificate and the token rigcli.TOKEN."""
    with guarded_server(tmp_path, "mutual") as (server, pki):
        yield server, pki


def test_tls_and_a_token_as_the_sidecars_take_them(guarded, tmp_path):
    server, pki = guarded
    tls = ["--addr", f"localhost:{server.port}", "--ca", str(pki.ca.cert)]
    tls += ["--cert", str(pki.client.cert), "--key", str(pki.client.key)]
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n")
    assert rig(server, "list", *tls, "--token-file", str(token_file)).returncode == 0
    assert rig(server, "list", *tls, RIGGER_TOKEN=TOKEN).returncode == 0
    refused = rig(server, "list", *tls, RIGGER_TOKEN="tok-b")
    assert refused.returncode == exitcodes.DENIED.code
    assert "UNAUTHENTICATED" in refused.stderr
    unreadable = rig(server, "list", *tls, "--token-file", str(tmp_path / "missing"))
    assert unreadable.returncode == exitcodes.USAGE.code
    half = rig(server, "list", "--addr", f"localhost:{server.port}", "--cert", str(pki.client.cert))
    assert half.returncode == exitcodes.USAGE.code


@pytest.mark.parametrize(
    "content",
    [b"", b"\n\n", b"tok\x01en\n", b"two words\n", b"\xc0\xff\n", b"a" * 100_000, b"b" * 3_000_000],
    ids=["empty", "blank", "control", "space", "not-utf8", "100k-line", "3mb"],
)
def test_a_token_file_that_holds_no_usable_token_is_refused(shared_server, tmp_path, content):
    token_file = tmp_path / "token"
    token_file.write_bytes(content)
    result = rig(shared_server, "list", "--token-file", str(token_file))
    assert result.returncode == exitcodes.USAGE.code
    assert "token" in result.stderr and "Traceback" not in result.stderr


def test_a_token_in_the_environment_that_is_no_token_is_refused(shared_server):
    result = rig(shared_server, "list", RIGGER_TOKEN="a\x01b")
    assert result.returncode == exitcodes.USAGE.code
    assert "RIGGER_TOKEN" in result.stderr


# --- help, completion, docs/cli.md ----------------------------------------------


def test_help_prints_every_exit_status():
    result = subprocess.run([*RIG, "--help"], capture_output=True, text=True, check=True)
    for row in exitcodes.TABLE:
        assert f"{row.code:>3}  {row.meaning}" in result.stdout


def test_the_docs_table_of_exit_statuses_is_rigs():
    rows = re.findall(r"^\| (\d+) \| (.*) \|$", CLI_DOC, re.M)
    assert [(int(code), meaning.replace("\\|", "|")) for code, meaning in rows] == [
        (row.code, row.meaning) for row in exitcodes.TABLE
    ]


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts_are_valid_shell(shell, tmp_path):
    result = subprocess.run([*RIG, "completion", shell], capture_output=True, text=True, check=True)
    for word in ("watch", "--state-file", "--sort", "generate", "completion"):
        assert word in result.stdout
    script = tmp_path / f"rig.{shell}"
    script.write_text(result.stdout)
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed: the script was generated, not checked")
    subprocess.run([shell, "-n", str(script)], check=True)


def test_the_docs_terminal_commands_work(shared_server, tmp_path):
    if shutil.which("jq") is None:
        pytest.fail("jq is not installed; docs/cli.md's commands use it")
    [block] = docblocks.run_by("docs/cli.md", __file__)
    (shared_server.root / "examples").mkdir(exist_ok=True)
    shutil.copy(EXAMPLE_PRD, shared_server.root / "examples" / "PRD.md")
    bin_dir = pathlib.Path(sys.executable).parent  # where pip put `rig`
    env = env_for(shared_server)
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block],
        cwd=shared_server.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "Write the release notes" in result.stdout


def test_the_docs_mcp_snippet_is_a_valid_client_configuration():
    config = json.loads(re.findall(r"```json\n(.*?)```", CLI_DOC, re.S)[0])
    entry = config["mcpServers"]["rigger"]
    assert entry["command"] == "rig"
    assert entry["args"][0] == "mcp"
