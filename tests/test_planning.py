"""GenerateTasksFromPRD and OrchestrateTask with the offline planner, through a real server.

The offline planner is deterministic, so what it plans is checked exactly in
tests/test_planner_offline.py; here the subject is what the server does with a
plan: one transaction, the events, the statuses, the stored results, and
that a failed call writes nothing.

Most tests share one server; each plans its own copy of the example PRD, so
none sees another's tasks as its PRD's. Those that restart the server, or
fill it with 16 000 tasks, start their own.
"""

from __future__ import annotations

import asyncio
import pathlib
import re
import shutil
import sqlite3

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from rigger_server import wire
from rigger_server.sqlite_store import SqliteStore
from streams import (
    STATUS_CHANGED,
    UPDATED,
    all_tasks,
    assert_no_events_after,
    fails,
    kinds,
    log_head,
    read_events,
    read_until,
    replay_all,
    subscribe_live,
)

from testkit.serverproc import ServerProcess

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "PRD.md"
ORCHESTRATED = pb.TASK_EVENT_TYPE_ORCHESTRATED
TITLES = [
    "Design the notification message format",
    "Resume the event stream from the stored sequence in clients/python/rigger_client/watch.py",
    "Post messages to the chat webhook",
    "Add per-engineer mute settings",
    "Refactor the sidecar entry point to run the notifier beside the printer",
]


@pytest.fixture
def server(shared_server: ServerProcess) -> ServerProcess:
    """The module's server (conftest's `server` would start one per test)."""
    return shared_server


@pytest.fixture
def stub(shared_stub):
    return shared_stub


@pytest.fixture
def prd(server: ServerProcess, request: pytest.FixtureRequest) -> str:
    """This test's own copy of the example PRD: its path, relative to the project root."""
    path = pathlib.Path("docs") / f"{re.sub(r'[^A-Za-z0-9_]+', '_', request.node.name)}.md"
    (server.root / path).parent.mkdir(exist_ok=True)
    shutil.copy(EXAMPLE, server.root / path)
    return str(path)


@pytest.fixture
def own_server(project: pathlib.Path):
    """A server of this test's own, with the example PRD at docs/PRD.md."""
    (project / "docs").mkdir()
    shutil.copy(EXAMPLE, project / "docs" / "PRD.md")
    proc = ServerProcess(project).start()
    yield proc
    proc.stop()


async def parse(stub, path: str) -> str:
    return (await stub.ParsePRD(pb.ParsePRDRequest(prd_file_path=path))).prd_id


async def generate(stub, prd_id: str, **fields) -> pb.GenerateTasksFromPRDResponse:
    return await stub.GenerateTasksFromPRD(pb.GenerateTasksFromPRDRequest(prd_id=prd_id, **fields))


async def orchestrate(stub, task_id: str, **fields) -> pb.OrchestrateTaskResponse:
    return await stub.OrchestrateTask(pb.OrchestrateTaskRequest(task_id=task_id, **fields))


async def snapshot(stub) -> tuple[list[bytes], int]:
    return await all_tasks(stub), await log_head(stub)


async def assert_unchanged(stub, before: tuple[list[bytes], int]) -> None:
    tasks, head = before
    assert await all_tasks(stub) == tasks
    await assert_no_events_after(stub, head)


def stored_prds(server) -> int:
    with sqlite3.connect(f"file:{server.db}?mode=ro", uri=True) as db:
        return db.execute("SELECT COUNT(*) FROM prds").fetchone()[0]


# --- GenerateTasksFromPRD ---------------------------------------------------------


async def test_a_parsed_prd_becomes_its_tasks_with_dependencies_as_task_ids(stub, prd):
    prd_id = await parse(stub, prd)
    reply = await generate(stub, prd_id)
    assert [t.title for t in reply.tasks] == TITLES
    assert reply.tasks_generated == 5
    assert (reply.planner, reply.model, reply.prd_id) == ("offline", "offline", prd_id)
    first, second, third, fourth, fifth = reply.tasks
    assert {t.source_prd_id for t in reply.tasks} == {prd_id}
    assert {t.status for t in reply.tasks} == {pb.TASK_STATUS_TODO}
    assert (first.assignee, first.due_date) == ("Alice", "2025-03-03")
    assert list(third.dependencies) == [first.id]
    assert list(fourth.dependencies) == [third.id]
    assert list(fifth.dependencies) == [second.id, third.id]
    assert fifth.complexity == 8  # base 3, long title, "refactor", no assignee, no due date
    assert "clients/python/rigger_client/watch.py" in second.context_files
    listed = await stub.ListTasks(pb.ListTasksRequest())
    assert {t.id for t in reply.tasks} <= {t.id for t in listed.tasks}


async def test_each_generated_task_emits_created_naming_the_planner_model_and_prd(stub, prd):
    prd_id = await parse(stub, prd)
    events = await subscribe_live(stub)
    reply = await generate(stub, prd_id, model="llama3.1")
    created = await read_events(events, 5)
    events.cancel()
    assert kinds(created) == ["TASK_EVENT_TYPE_CREATED"] * 5
    assert [e.task.id for e in created] == [t.id for t in reply.tasks]
    assert [e.task for e in created] == list(reply.tasks)
    for event in created:
        assert dict(event.metadata) == {"planner": "offline", "model": "offline", "prd_id": prd_id}


async def test_a_model_asked_of_a_default_server_is_answered_by_the_offline_planner(stub, prd):
    reply = await generate(stub, await parse(stub, prd), model="llama3.1")
    assert (reply.planner, reply.model) == ("offline", "offline")


async def test_a_path_to_a_md_file_is_parsed_and_stored_first_as_first_release_clients_send(
    stub, server, prd
):
    before = stored_prds(server)
    reply = await generate(stub, f"./{prd}")
    assert reply.prd_id.startswith("prd-")
    assert [t.title for t in reply.tasks] == TITLES
    assert {t.source_prd_id for t in reply.tasks} == {reply.prd_id}
    assert stored_prds(server) == before + 1


async def test_a_prd_id_that_is_neither_stored_nor_a_md_path_is_not_found(stub, server):
    before = await snapshot(stub)
    details = await fails(
        generate(stub, "prd-123"), grpc.StatusCode.NOT_FOUND, "prd_id", "ParsePRD", ".md"
    )
    assert "prd-123" in details
    await assert_unchanged(stub, before)


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("../outside.md", grpc.StatusCode.PERMISSION_DENIED),
        ("/etc/rigger.md", grpc.StatusCode.PERMISSION_DENIED),
        ("docs/missing.md", grpc.StatusCode.NOT_FOUND),
    ],
)
async def test_a_path_gets_parseprds_confinement_with_errors_naming_prd_id(
    stub, server, path, code
):
    (server.root.parent / "outside.md").write_text("# Secret\n\n- [ ] leak it\n")
    before, prds = await snapshot(stub), stored_prds(server)
    details = await fails(generate(stub, path), code, "prd_id")
    assert "prd_file_path" not in details
    await assert_unchanged(stub, before)
    assert stored_prds(server) == prds


async def test_an_empty_prd_id_is_invalid_argument(stub):
    await fails(generate(stub, " "), grpc.StatusCode.INVALID_ARGUMENT, "prd_id")


async def test_a_prd_with_a_dependency_cycle_writes_nothing_not_even_the_prd(stub, server):
    (server.root / "cycle.md").write_text(
        "# Loop\n\n## Tasks\n\n- [ ] First (after #2)\n- [ ] Second (after #1)\n"
    )
    before, prds = await snapshot(stub), stored_prds(server)
    await fails(generate(stub, "cycle.md"), grpc.StatusCode.INVALID_ARGUMENT, "prd_id", "cycle")
    await assert_unchanged(stub, before)
    assert stored_prds(server) == prds


async def test_a_second_generation_of_a_prd_is_already_exists_and_writes_nothing(stub, prd):
    prd_id = await parse(stub, prd)
    first = await generate(stub, prd_id)
    before = await snapshot(stub)
    details = await fails(
        generate(stub, prd_id), grpc.StatusCode.ALREADY_EXISTS, "replace_existing"
    )
    assert first.tasks[0].id in details
    await assert_unchanged(stub, before)


async def test_a_prd_parsed_again_from_the_same_file_is_the_same_prd(stub, server, prd):
    await generate(stub, await parse(stub, prd))
    link = prd.replace(".md", "_link.md")
    (server.root / link).symlink_to(pathlib.Path(prd).name)
    before = await snapshot(stub)
    for path in (f"{server.root}/{prd}", f"./{prd}", link):
        await fails(generate(stub, await parse(stub, path)), grpc.StatusCode.ALREADY_EXISTS)
        await fails(generate(stub, path), grpc.StatusCode.ALREADY_EXISTS)
    assert await all_tasks(stub) == before[0]


async def test_replace_existing_archives_the_tasks_still_in_todo_and_keeps_the_others(stub, prd):
    prd_id = await parse(stub, prd)
    old = (await generate(stub, prd_id)).tasks
    started = old[0]
    await stub.UpdateTask(
        pb.UpdateTaskRequest(task_id=started.id, status=pb.TASK_STATUS_IN_PROGRESS)
    )
    events = await subscribe_live(stub)
    reply = await generate(stub, prd, replace_existing=True)
    assert list(reply.archived_task_ids) == [t.id for t in old[1:]]
    # The started task keeps its item: only the others are made afresh.
    assert [t.title for t in reply.tasks] == TITLES[1:]
    logged = await read_events(events, 4 + 4)
    events.cancel()
    assert kinds(logged) == ["TASK_EVENT_TYPE_DELETED"] * 4 + ["TASK_EVENT_TYPE_CREATED"] * 4
    for event in logged[:4]:
        assert event.task.status == pb.TASK_STATUS_ARCHIVED
        assert dict(event.metadata) == {
            "previous_status": "TASK_STATUS_TODO",
            "replaced_by_prd_id": reply.prd_id,
        }
    kept = (await stub.GetTask(pb.GetTaskRequest(task_id=started.id))).task
    assert kept.status == pb.TASK_STATUS_IN_PROGRESS
    assert kept.version == started.version + 1
    for gone in old[1:]:
        task = (await stub.GetTask(pb.GetTaskRequest(task_id=gone.id))).task
        assert task.status == pb.TASK_STATUS_ARCHIVED
    assert [(task_of(reply, r).title, outcome_name(r)) for r in reply.results] == [
        (TITLES[0], "KEPT"),
        *((title, "CREATED") for title in TITLES[1:]),
        *((title, "ARCHIVED") for title in TITLES[1:]),
    ]


def outcome_name(result: pb.GeneratedTask) -> str:
    return pb.GenerationOutcome.Name(result.outcome).removeprefix("GENERATION_OUTCOME_")


def task_of(reply: pb.GenerateTasksFromPRDResponse, result: pb.GeneratedTask) -> pb.Task:
    """The result's task: a created one is sent once, in the answer's `tasks`, never twice."""
    if result.outcome == pb.GENERATION_OUTCOME_CREATED:
        assert not result.HasField("task")
        (created,) = [task for task in reply.tasks if task.id == result.task_id]
        return created
    assert result.task.id == result.task_id
    return result.task


async def live_titles(stub, prd_id: str) -> list[str]:
    """The titles of the PRD's live tasks and their subtasks, oldest first."""
    tasks = (await stub.ListTasks(pb.ListTasksRequest())).tasks
    return sorted(t.title for t in tasks if t.source_prd_id == prd_id)


async def test_replace_after_orchestrating_leaves_no_duplicate_and_no_orphan_subtask(stub, prd):
    # The walk: orchestrate 2 of the 5 tasks, then replace. It used to
    # leave three titles twice and the decomposed task's 4 subtasks orphaned.
    prd_id = await parse(stub, prd)
    old = (await generate(stub, prd_id)).tasks
    await orchestrate(stub, old[0].id)
    split = await orchestrate(stub, old[4].id)
    reply = await generate(stub, prd_id, replace_existing=True)
    listed = (await stub.ListTasks(pb.ListTasksRequest())).tasks
    mine = [t for t in listed if t.source_prd_id == prd_id]
    top = [t.title for t in mine if not t.HasField("parent_task_id")]
    assert sorted(top) == sorted(TITLES)
    subtasks = [t for t in mine if t.HasField("parent_task_id")]
    assert {t.parent_task_id for t in subtasks} == {old[4].id}
    assert len(subtasks) == len(split.result.subtasks) == 4
    assert list(reply.archived_task_ids) == [old[1].id, old[2].id, old[3].id]
    # The new task of #4 waits for the kept task of #5's dependency's item, #3's new task.
    by_title = {t.title: t for t in mine if not t.HasField("parent_task_id")}
    assert list(by_title[TITLES[3]].dependencies) == [by_title[TITLES[2]].id]
    assert list(by_title[TITLES[4]].dependencies) == [
        by_title[TITLES[1]].id,
        by_title[TITLES[2]].id,
    ]
    await fails(generate(stub, prd_id), grpc.StatusCode.ALREADY_EXISTS, "5 tasks")


SYNC = pb.GENERATION_MODE_SYNC
REPLACE = pb.GENERATION_MODE_REPLACE


async def test_sync_of_an_unchanged_prd_keeps_every_task_and_writes_nothing(stub, prd):
    prd_id = await parse(stub, prd)
    first = await generate(stub, prd_id)
    await orchestrate(stub, first.tasks[4].id)
    before = await snapshot(stub)
    reply = await generate(stub, prd, mode=SYNC)
    assert [(r.task.id, outcome_name(r)) for r in reply.results] == [
        (t.id, "KEPT") for t in first.tasks
    ]
    assert (reply.tasks_generated, list(reply.tasks), list(reply.archived_task_ids)) == (0, [], [])
    await assert_unchanged(stub, before)


async def test_sync_follows_a_prd_that_gained_changed_and_lost_items(stub, server, prd):
    prd_id = await parse(stub, prd)
    old = (await generate(stub, prd_id)).tasks
    await stub.UpdateTask(
        pb.UpdateTaskRequest(task_id=old[1].id, status=pb.TASK_STATUS_IN_PROGRESS, assignee="carol")
    )
    split = await orchestrate(stub, old[4].id)
    text = (server.root / prd).read_text()
    text = text.replace("on start\n", "on start, and log the sequence resumed from\n")
    text = text.replace(
        "- [ ] Add per-engineer mute settings, depends on Post messages to the chat webhook\n", ""
    )
    text = text.replace(f"- [ ] {TITLES[4]} (after #2 and #3)\n", "")
    text += "- [ ] Post a daily digest (after #3)\n"
    (server.root / prd).write_text(text)
    events = await subscribe_live(stub)
    reply = await generate(stub, prd, mode=SYNC)
    assert [
        (task_of(reply, r).title, outcome_name(r), list(r.changed_fields)) for r in reply.results
    ] == [
        (TITLES[0], "KEPT", []),
        (TITLES[1], "UPDATED", ["reasoning"]),
        (TITLES[2], "KEPT", []),
        ("Post a daily digest", "CREATED", []),
        (TITLES[3], "ARCHIVED", []),
        (TITLES[4], "LEFT_ALONE", []),
    ]
    resumed = reply.results[1].task
    assert (resumed.id, resumed.status, resumed.assignee, resumed.version) == (
        old[1].id,
        pb.TASK_STATUS_IN_PROGRESS,
        "carol",
        old[1].version + 2,
    )
    assert "log the sequence resumed from" in resumed.reasoning
    digest = task_of(reply, reply.results[3])
    assert list(digest.dependencies) == [old[2].id]
    assert list(reply.archived_task_ids) == [old[3].id]
    assert [t.id for t in reply.tasks] == [digest.id]
    logged = await read_events(events, 3)
    events.cancel()
    assert [(e.event_type, e.task.id) for e in logged] == [
        (pb.TASK_EVENT_TYPE_DELETED, old[3].id),
        (pb.TASK_EVENT_TYPE_CREATED, digest.id),
        (pb.TASK_EVENT_TYPE_UPDATED, old[1].id),
    ]
    assert dict(logged[2].metadata) == {
        "changed_fields": "reasoning",
        "planner": "offline",
        "model": "offline",
        "prd_id": reply.prd_id,
    }
    left = (await stub.GetTask(pb.GetTaskRequest(task_id=old[4].id))).task
    assert (left.status, list(left.subtask_ids)) == (
        pb.TASK_STATUS_DECOMPOSED,
        [t.id for t in split.result.subtasks],
    )


async def test_sync_keeps_a_renamed_task_and_its_new_name_until_the_prd_renames_it(
    stub, server, prd
):
    prd_id = await parse(stub, prd)
    old = (await generate(stub, prd_id)).tasks
    await stub.UpdateTask(pb.UpdateTaskRequest(task_id=old[0].id, title="Design the message"))
    reply = await generate(stub, prd, mode=SYNC)
    assert (reply.results[0].task.id, reply.results[0].task.title) == (
        old[0].id,
        "Design the message",
    )
    assert outcome_name(reply.results[0]) == "KEPT"
    # A change of case is the same item, and the PRD's new spelling wins.
    path = server.root / prd
    path.write_text(path.read_text().replace("Design the notification", "Design the Notification"))
    again = await generate(stub, prd, mode=SYNC)
    assert (again.results[0].task.id, again.results[0].task.title) == (
        old[0].id,
        "Design the Notification message format",
    )
    assert list(again.results[0].changed_fields) == ["title"]


async def test_sync_matches_tasks_generated_before_items_were_kept_by_title_and_order(
    stub, server, prd
):
    prd_id = await parse(stub, prd)
    old = (await generate(stub, prd_id)).tasks
    with sqlite3.connect(server.db) as db:
        db.execute("UPDATE tasks SET prd_item = NULL WHERE source_prd_id = ?", (prd_id,))
    before = await snapshot(stub)
    reply = await generate(stub, prd, mode=SYNC)
    assert [(r.task.id, outcome_name(r)) for r in reply.results] == [(t.id, "KEPT") for t in old]
    await assert_unchanged(stub, before)
    with sqlite3.connect(f"file:{server.db}?mode=ro", uri=True) as db:
        kept = db.execute(
            "SELECT COUNT(*) FROM tasks WHERE source_prd_id = ? AND prd_item IS NOT NULL",
            (prd_id,),
        ).fetchone()[0]
    assert kept == 5


async def test_sync_of_a_prd_without_tasks_creates_them_as_create_would(stub, prd):
    reply = await generate(stub, prd, mode=SYNC)
    assert [t.title for t in reply.tasks] == TITLES
    assert {outcome_name(r) for r in reply.results} == {"CREATED"}


async def test_sync_gives_each_repeated_title_its_own_task_and_never_two(stub, server):
    path = server.root / "repeated.md"
    path.write_text("# Twice\n\n## Tasks\n\n- [ ] Ship it\n- [ ] Test it\n- [ ] Ship it\n")
    first = await generate(stub, "repeated.md")
    path.write_text("# Twice\n\n## Tasks\n\n- [ ] Ship it\n- [ ] Ship it\n- [ ] Ship it\n")
    reply = await generate(stub, "repeated.md", mode=SYNC)
    # The second "Ship it" keeps its task; its reasoning names its new line.
    assert [(r.task.id, outcome_name(r), list(r.changed_fields)) for r in reply.results][:2] == [
        (first.tasks[0].id, "KEPT", []),
        (first.tasks[2].id, "UPDATED", ["reasoning"]),
    ]
    assert [outcome_name(r) for r in reply.results[2:]] == ["CREATED", "ARCHIVED"]
    again = await generate(stub, "repeated.md", mode=SYNC)
    assert {outcome_name(r) for r in again.results} == {"KEPT"}


async def test_mode_and_replace_existing_that_disagree_are_invalid_argument(stub, prd):
    before = await snapshot(stub)
    await fails(
        generate(stub, prd, mode=SYNC, replace_existing=True),
        grpc.StatusCode.INVALID_ARGUMENT,
        "replace_existing",
        "GENERATION_MODE_SYNC",
    )
    await fails(generate(stub, prd, mode=9), grpc.StatusCode.INVALID_ARGUMENT, "mode")
    await assert_unchanged(stub, before)


@pytest.mark.parametrize(
    "fields",
    [{"replace_existing": True}, {"mode": REPLACE}, {"mode": SYNC}],
    ids=["replace_existing", "replace", "sync"],
)
async def test_a_regeneration_that_fails_planning_leaves_every_old_task_live(
    stub, server, prd, fields
):
    prd_id = await parse(stub, prd)
    await generate(stub, prd_id)
    path = server.root / prd
    path.write_text(path.read_text().replace("(after #1)", "(after #5)"))
    before = await snapshot(stub)
    await fails(generate(stub, prd, **fields), grpc.StatusCode.INVALID_ARGUMENT, "cycle")
    await assert_unchanged(stub, before)
    listed = (await stub.ListTasks(pb.ListTasksRequest())).tasks
    assert sorted(t.title for t in listed if t.source_prd_id == prd_id) == sorted(TITLES)


async def test_one_assignee_spelled_two_ways_in_the_prd_is_one_person_and_filters_stay_exact(
    stub, prd
):
    prd_id = await parse(stub, prd)
    reply = await generate(stub, prd_id)
    assert [t.assignee for t in reply.tasks][:3] == ["Alice", "bob", "Alice"]

    async def assigned(name: str) -> list[str]:
        listed = (await stub.ListTasks(pb.ListTasksRequest(assignee=name))).tasks
        return [t.id for t in listed if t.source_prd_id == prd_id]

    assert sorted(await assigned("Alice")) == sorted([reply.tasks[0].id, reply.tasks[2].id])
    assert await assigned("alice") == []


async def test_a_checked_box_is_created_completed(stub, server):
    (server.root / "done.md").write_text("# Done\n\n- [x] Already shipped\n- [ ] Still to do\n")
    reply = await generate(stub, "done.md")
    assert [t.status for t in reply.tasks] == [pb.TASK_STATUS_COMPLETED, pb.TASK_STATUS_TODO]


@pytest.fixture
def server_for_1_mib(project: pathlib.Path):
    """A server that creates the 16 000 tasks of a 1 MiB PRD in one generation."""
    proc = ServerProcess(project, extra_args=("--max-generated-tasks", "20000")).start()
    yield proc
    proc.stop()


async def test_a_1_mib_prd_generates_while_health_and_a_live_stream_keep_going(server_for_1_mib):
    server = server_for_1_mib
    unit = "- [ ] Deliver part of the feature @ann Due: 2025-06-01 (after #1)\n"
    text = "# Big\n\n## Tasks\n\n- [ ] First part\n" + unit * (1024 * 1024 // len(unit) - 1)
    (server.root / "big.md").write_text(text)
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    async with grpc.aio.insecure_channel(server.address, options=options) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        side = (await stub.AddTask(pb.AddTaskRequest(title="side", assignee="watcher"))).task
        # Only the side task's updates: the plan's 16 000 CREATED would overflow it.
        live = await subscribe_live(stub, event_types=[UPDATED], assignee="watcher")
        generation = asyncio.ensure_future(generate(stub, "big.md"))
        rounds_during = 0
        while not generation.done():
            reply = await health.Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            side = (
                await stub.UpdateTask(
                    pb.UpdateTaskRequest(task_id=side.id, title=f"side {rounds_during}")
                )
            ).task
            (event,) = await read_events(live, 1)
            assert event.task.version == side.version
            if not generation.done():
                rounds_during += 1
        result = await generation
        live.cancel()
    assert result.tasks_generated > 10_000
    assert rounds_during > 0, "no health check and live event got through during the call"


async def test_a_planned_assignee_over_the_field_limit_is_invalid_argument_naming_the_task(
    stub, server
):
    (server.root / "long-name.md").write_text(f"# Names\n\n## Tasks\n\n- Ship it @{'x' * 5000}\n")
    before, prds = await snapshot(stub), stored_prds(server)
    await fails(
        generate(stub, "long-name.md"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "prd_id",
        "tasks.0 ('Ship it').assignee: is 5000 characters long; the limit is 4096",
        "--max-field-length",
    )
    await assert_unchanged(stub, before)
    assert stored_prds(server) == prds


async def test_planned_titles_and_reasoning_are_clipped_to_the_servers_limits(project):
    objective = "Take card payments in every currency the shop sells in " * 4
    (project / "shop.md").write_text(f"# Shop\n\n## Objectives\n\n- {objective}\n")
    proc = ServerProcess(
        project, extra_args=("--max-title-length", "60", "--max-field-length", "100")
    ).start()
    try:
        async with grpc.aio.insecure_channel(proc.address) as channel:
            stub = rigger_pb2_grpc.RiggerServiceStub(channel)
            (task,) = (await generate(stub, "shop.md")).tasks
            (event,) = await replay_all(stub, 1)
    finally:
        proc.stop()
    assert (len(task.title), len(task.reasoning)) == (60, 100)
    assert task.title.startswith("Take card payments") and task.title.endswith("\u2026")
    assert event.task == task


# --- OrchestrateTask --------------------------------------------------------------


@pytest.fixture
async def planned(stub, prd) -> list[pb.Task]:
    return list((await generate(stub, await parse(stub, prd))).tasks)


async def test_a_simple_task_moves_through_enhancement_and_test_to_orchestration_complete(
    stub, planned
):
    task = planned[0]
    events = await subscribe_live(stub)
    reply = await orchestrate(stub, task.id, model="llama3.1", test_type="multiple_choice")
    logged = await read_events(events, 4)
    events.cancel()
    result = reply.result
    assert (result.success, result.routing_decision) == (True, "enhance")
    assert (result.planner, result.model, result.complexity_score) == ("offline", "offline", 3)
    assert list(result.routing_reasons) == ["base 3"]
    assert result.enhancement.enhancement_type == "acceptance_criteria"
    assert result.enhancement.content.startswith(f"Goal: {task.title}")
    assert result.comprehension_test.test_type == "multiple_choice"
    assert result.comprehension_test.correct_answer in result.comprehension_test.options
    assert (result.enhancement.task_id, result.comprehension_test.task_id) == (task.id, task.id)
    assert not result.subtasks
    assert (reply.task.status, reply.task.version) == (pb.TASK_STATUS_ORCHESTRATION_COMPLETE, 4)
    assert kinds(logged) == ["TASK_EVENT_TYPE_STATUS_CHANGED"] * 3 + [
        "TASK_EVENT_TYPE_ORCHESTRATED"
    ]
    assert [(e.task.status, e.task.version) for e in logged] == [
        (pb.TASK_STATUS_PENDING_ENHANCEMENT, 2),
        (pb.TASK_STATUS_PENDING_COMPREHENSION_TEST, 3),
        (pb.TASK_STATUS_ORCHESTRATION_COMPLETE, 4),
        (pb.TASK_STATUS_ORCHESTRATION_COMPLETE, 4),
    ]
    assert [e.metadata["previous_status"] for e in logged[:3]] == [
        "TASK_STATUS_TODO",
        "TASK_STATUS_PENDING_ENHANCEMENT",
        "TASK_STATUS_PENDING_COMPREHENSION_TEST",
    ]
    assert dict(logged[3].metadata) == {
        "routing_decision": "enhance",
        "planner": "offline",
        "model": "offline",
        "test_type": "multiple_choice",
        "complexity_score": "3",
    }


async def test_an_empty_test_type_means_short_answer(stub, planned):
    reply = await orchestrate(stub, planned[0].id)
    test = reply.result.comprehension_test
    assert (test.test_type, list(test.options)) == ("short_answer", [])


async def test_a_complex_task_is_decomposed_into_subtasks_and_its_parent_decomposed(stub, planned):
    task = planned[4]
    events = await subscribe_live(stub)
    reply = await orchestrate(stub, task.id)
    result = reply.result
    count = len(result.subtasks)
    logged = await read_events(events, 1 + count + 3)
    events.cancel()
    assert (result.routing_decision, result.complexity_score) == ("decompose", 8)
    assert 3 <= count <= 5
    assert not result.HasField("enhancement") and not result.HasField("comprehension_test")
    assert {s.parent_task_id for s in result.subtasks} == {task.id}
    assert {s.source_prd_id for s in result.subtasks} == {task.source_prd_id}
    assert all(s.complexity < 8 for s in result.subtasks)
    assert reply.task.status == pb.TASK_STATUS_DECOMPOSED
    assert list(reply.task.subtask_ids) == [s.id for s in result.subtasks]
    assert kinds(logged) == [
        "TASK_EVENT_TYPE_STATUS_CHANGED",
        *["TASK_EVENT_TYPE_CREATED"] * count,
        "TASK_EVENT_TYPE_STATUS_CHANGED",
        "TASK_EVENT_TYPE_DECOMPOSED",
        "TASK_EVENT_TYPE_ORCHESTRATED",
    ]
    assert logged[0].task.status == pb.TASK_STATUS_PENDING_DECOMPOSITION
    assert [e.task for e in logged[1 : 1 + count]] == list(result.subtasks)
    for created in logged[1 : 1 + count]:
        assert dict(created.metadata) == {"planner": "offline", "model": "offline"}
    decomposed = logged[-2]
    assert decomposed.task == reply.task
    assert decomposed.metadata["subtask_ids"] == ",".join(s.id for s in result.subtasks)
    assert dict(logged[-1].metadata) == {
        "routing_decision": "decompose",
        "planner": "offline",
        "model": "offline",
        "test_type": "",
        "complexity_score": "8",
    }


async def test_an_orchestrated_task_passes_with_what_is_stored_even_after_a_restart(own_server):
    server = own_server
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        planned = (await generate(stub, "docs/PRD.md")).tasks
        first = await orchestrate(stub, planned[0].id, test_type="multiple_choice")
        decomposed = await orchestrate(stub, planned[4].id)
    server.restart()
    async with grpc.aio.insecure_channel(server.address) as channel:
        again = rigger_pb2_grpc.RiggerServiceStub(channel)
        before = await snapshot(again)
        passed = await orchestrate(again, planned[0].id, test_type="short_answer")
        passed_decomposed = await orchestrate(again, planned[4].id)
        await assert_unchanged(again, before)
    assert passed.result.routing_decision == "pass"
    assert (passed.result.planner, passed.result.model) == ("", "")
    assert passed.result.enhancement == first.result.enhancement
    assert passed.result.comprehension_test == first.result.comprehension_test
    assert passed.task == first.task
    assert passed_decomposed.result.routing_decision == "pass"
    assert list(passed_decomposed.result.subtasks) == list(decomposed.result.subtasks)


async def test_enhancements_and_tests_are_stored_with_the_task(own_server):
    server = own_server
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        task = (await generate(stub, "docs/PRD.md")).tasks[1]
        reply = await orchestrate(stub, task.id)
    server.stop()
    store = SqliteStore(server.db, wire.encode_event)
    try:
        (enhancement,) = store.enhancements_of(task.id)
        (test,) = store.comprehension_tests_of(task.id)
    finally:
        store.close()
    assert wire.enhancement_to_pb(enhancement) == reply.result.enhancement
    assert wire.test_to_pb(test) == reply.result.comprehension_test


@pytest.mark.parametrize("test_type", ["essay", "SHORT_ANSWER", "multiple choice"])
async def test_an_unknown_test_type_is_invalid_argument_listing_both_kinds(
    stub, planned, test_type
):
    before = await snapshot(stub)
    await fails(
        orchestrate(stub, planned[0].id, test_type=test_type),
        grpc.StatusCode.INVALID_ARGUMENT,
        "test_type",
        "short_answer",
        "multiple_choice",
    )
    await assert_unchanged(stub, before)


@pytest.mark.parametrize("status", [pb.TASK_STATUS_ARCHIVED, pb.TASK_STATUS_COMPLETED])
async def test_an_archived_or_completed_task_is_failed_precondition(stub, planned, status):
    task = planned[0]
    await stub.UpdateTask(pb.UpdateTaskRequest(task_id=task.id, status=status))
    before = await snapshot(stub)
    await fails(
        orchestrate(stub, task.id),
        grpc.StatusCode.FAILED_PRECONDITION,
        task.id,
        pb.TaskStatus.Name(status),
    )
    await assert_unchanged(stub, before)


async def test_an_unknown_task_is_not_found_and_an_empty_id_invalid(stub):
    await fails(orchestrate(stub, "no-such-task"), grpc.StatusCode.NOT_FOUND, "no-such-task")
    await fails(orchestrate(stub, ""), grpc.StatusCode.INVALID_ARGUMENT, "task_id")


async def test_orchestrating_at_a_version_the_task_has_left_is_aborted(stub, planned):
    task = planned[0]
    await stub.UpdateTask(pb.UpdateTaskRequest(task_id=task.id, assignee="Bob"))
    before = await snapshot(stub)
    await fails(orchestrate(stub, task.id, expected_version=1), grpc.StatusCode.ABORTED, "version")
    await assert_unchanged(stub, before)
    reply = await orchestrate(stub, task.id, expected_version=2)
    assert reply.task.version == 5


async def test_a_task_set_back_to_todo_is_orchestrated_afresh(stub, planned):
    task = planned[0]
    await orchestrate(stub, task.id)
    await stub.UpdateTask(pb.UpdateTaskRequest(task_id=task.id, status=pb.TASK_STATUS_TODO))
    events = await subscribe_live(stub)
    reply = await orchestrate(stub, task.id)
    logged = await read_until(events, lambda e: e.event_type == ORCHESTRATED)
    events.cancel()
    assert reply.result.routing_decision == "enhance"
    assert logged[0].event_type == STATUS_CHANGED
    assert logged[0].metadata["previous_status"] == "TASK_STATUS_TODO"


async def test_a_task_added_by_hand_is_orchestrated_without_a_prd(stub):
    task = (await stub.AddTask(pb.AddTaskRequest(title="Write the release notes"))).task
    reply = await orchestrate(stub, task.id, test_type="multiple_choice")
    assert reply.result.routing_decision == "enhance"
    assert reply.result.complexity_score == 5
    assert len(reply.result.comprehension_test.options) >= 2


async def test_subtasks_are_never_counted_as_the_prds_tasks(stub, planned, prd):
    await orchestrate(stub, planned[4].id)
    before = await snapshot(stub)
    await fails(generate(stub, prd), grpc.StatusCode.ALREADY_EXISTS, "5 tasks")
    await assert_unchanged(stub, before)


async def test_a_deleted_generation_can_be_generated_again(stub, prd):
    prd_id = await parse(stub, prd)
    for task in (await generate(stub, prd_id)).tasks:
        await stub.DeleteTask(pb.DeleteTaskRequest(task_id=task.id))
    reply = await generate(stub, prd_id)
    assert reply.tasks_generated == 5
    assert not reply.archived_task_ids
