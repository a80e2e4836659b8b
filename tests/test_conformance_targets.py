"""The conformance suite against servers it did not configure: requirements, profiles, targets.

`nox -s conformance_target` and `nox -s skew` run the whole suite that way;
these are the fast part: what a case is found to require, which runs a
target takes, a real `rig grpc` started by a command that writes no ready
file, and its profile read through reflection.
"""

from __future__ import annotations

import os
import pathlib
import shlex
import sys
from typing import Any

import grpc
import pytest
import yaml
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc as rpc

from conformance import cases as c
from conformance.cases import load
from conformance.executors.launch import build_commands
from conformance.executors.process import ExecutorPool
from conformance.suite.execute import execute
from conformance.suite.plan import plan
from conformance.targets import capabilities, profiles, target
from testkit.pki import RunSecurity
from testkit.serverproc import RIG, ServerProcess


def case(text: str) -> c.Case:
    return load.parse_case(yaml.safe_load(text), pathlib.Path("test.yaml"))


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


# --- a shared server: each run judged on what it did, and tidied away -------------------


SHARED_CASES = (
    # ListTasks narrowed to the run's tasks (filters, archived, pagination).
    "list_tasks_filters_combine",
    "list_tasks_archived_only_when_asked",
    "list_tasks_pagination_counts_every_match",
    # Literal sequences, counted from the head when the run began.
    "add_task_failed_call_emits_nothing",
    "replay_beyond_head_is_invalid",
    # Files under --target-root.
    "generate_tasks_from_a_parsed_prd",
)


@pytest.fixture
def busy_server(tmp_path):
    """A running `rig grpc` that already holds others' tasks: live, archived, and large."""
    root = tmp_path / "busy"
    root.mkdir()
    server = ServerProcess(root).start()
    with grpc.insecure_channel(server.address) as channel:
        stub = rpc.RiggerServiceStub(channel)
        for index in range(12):
            # 11 of 520 kB: an unbounded listing of them would pass 4 MiB.
            title = f"someone else's {index} " + "🚀" * (130_000 if index < 11 else 0)
            task = stub.AddTask(pb.AddTaskRequest(title=title, assignee="Alice")).task
            if index % 2:
                stub.DeleteTask(pb.DeleteTaskRequest(task_id=task.id))
    yield server, root
    server.stop()


def counts(server: ServerProcess) -> tuple[int, int]:
    """(live tasks, archived tasks) the server lists."""
    with grpc.insecure_channel(server.address) as channel:
        stub = rpc.RiggerServiceStub(channel)
        live = stub.ListTasks(pb.ListTasksRequest(limit=1)).total_count
        archived = stub.ListTasks(pb.ListTasksRequest(status=pb.TASK_STATUS_ARCHIVED, limit=1))
    return live, archived.total_count


async def _run_cases(names: tuple[str, ...], chosen: target.Target, workdir: pathlib.Path) -> Any:
    every = {loaded.name: loaded for loaded in load.load_cases()}
    pool = ExecutorPool(build_commands(("python",)))
    try:
        return await execute(
            plan([every[n] for n in names], ["python"]), pool, workdir, target=chosen, jobs=1
        )
    finally:
        await pool.close()


async def test_runs_on_a_server_holding_others_tasks_pass_and_archive_what_they_made(
    busy_server, tmp_path
):
    server, root = busy_server
    before = counts(server)
    chosen = target.remote(server.address, root=root)
    results = await _run_cases(SHARED_CASES, chosen, tmp_path / "w")
    assert [r.problems for r in results] == [[]] * len(SHARED_CASES)
    assert all(r.tidied for r in results)
    live, _ = counts(server)
    assert live == before[0]
    assert not (root / "rigger-conformance").exists()


async def test_keep_leaves_the_runs_tasks_and_files(busy_server, tmp_path):
    server, root = busy_server
    before = counts(server)
    chosen = target.remote(server.address, root=root, keep=True)
    [result] = await _run_cases(("generate_tasks_from_a_parsed_prd",), chosen, tmp_path / "w")
    assert result.passed, result.problems
    assert counts(server)[0] == before[0] + 5 == before[0] + result.tidied
    assert [p.name for p in (root / "rigger-conformance").glob("run-*/docs/PRD.md")] == ["PRD.md"]


async def test_a_shared_servers_transcripts_match_a_fresh_servers(busy_server, tmp_path):
    server, root = busy_server
    chosen = target.remote(server.address, root=root)
    shared = await _run_cases(SHARED_CASES, chosen, tmp_path / "s")
    fresh = await _run_cases(SHARED_CASES, target.command(rig_command()), tmp_path / "f")
    assert [r.transcript for r in shared] == [r.transcript for r in fresh]


# --- a shell command line through --target-cmd ---------------------------------------------


async def test_a_shell_command_line_starts_each_run_with_its_flags_and_restarts(tmp_path):
    rig = " ".join(shlex.quote(word) for word in RIG)
    chosen = target.command(f"cd {{dir}} && exec {rig} grpc --port {{port}} --db tasks.db {{args}}")
    assert chosen.template is not None and chosen.template.shell
    names = ("subscribe_limit_is_resource_exhausted", "replay_resumes_after_server_restart")
    results = await _run_cases(names, chosen, tmp_path / "w")
    assert [r.problems for r in results] == [[], []]
