"""`rig grpc --planner ollama` against a stand-in that speaks Ollama's API on a real port.

Every failure of the Ollama provider reaches the client with its documented
code and a message that says what to do, and none leaves anything written:
no task, no event, no PRD, no enhancement.

The tests share one stand-in and one server (those that need flags of their
own start their own server); each starts with the stand-in's script and
records empty. Hostile answers (huge, many think blocks, hung, not valid
Unicode) reach the client with a documented code too, and leave the server
answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ollama_standin import OllamaStandIn, Reply, valid
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from streams import (
    WAIT,
    add,
    all_tasks,
    assert_no_events_after,
    fails,
    kinds,
    log_head,
    read_events,
    replay_all,
    subscribe_live,
)

from testkit.serverproc import ServerProcess
from testkit.wait import wait_until_async

PRD = (
    "# Checkout\n\nCard payments for the shop.\n\n"
    "## Objectives\n\n- Take card payments\n- Send receipts\n\n"
    "## Constraints\n\n- PCI compliant\n"
)
PLAN = {
    "tasks": [
        {"title": "Design the payment schema", "description": "Tables for payments"},
        {
            "title": "Build the payment API",
            "description": "Handlers",
            "assignee": "bob",
            "due_date": "2030-04-01",
            "context_files": ["api/pay.py"],
            "depends_on": [1],
        },
    ]
}
ENHANCEMENT = {"enhancement_type": "acceptance_criteria", "content": "- [ ] PCI compliant"}
TEST = {"question": "Which standard applies?", "correct_answer": "PCI DSS"}


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def shared_ollama() -> Iterator[OllamaStandIn]:
    with OllamaStandIn(models=("llama3.1:latest",)) as standin:
        yield standin


@pytest.fixture
def ollama(shared_ollama: OllamaStandIn) -> OllamaStandIn:
    """The stand-in, with nothing scripted and nothing recorded yet."""
    shared_ollama.replies.clear()
    shared_ollama.chats.clear()
    shared_ollama.paths.clear()
    shared_ollama.answered = 0
    return shared_ollama


def ollama_server(project, url: str, *flags: str) -> ServerProcess:
    (project / "prd.md").write_text(PRD)
    return ServerProcess(project, extra_args=("--planner", "ollama", "--ollama-url", url, *flags))


@contextlib.asynccontextmanager
async def own_server(
    project, ollama: OllamaStandIn, *flags: str
) -> AsyncIterator[tuple[rigger_pb2_grpc.RiggerServiceStub, ServerProcess]]:
    """A server of the test's own, started with `flags`, and a client of it."""
    proc = ollama_server(project, ollama.url, *flags).start()
    try:
        async with grpc.aio.insecure_channel(proc.address) as channel:
            yield rigger_pb2_grpc.RiggerServiceStub(channel), proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory, shared_ollama) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("ollama") / "project"
    root.mkdir()
    proc = ollama_server(root, shared_ollama.url).start()
    yield proc
    proc.stop()


@pytest.fixture
def server(module_server: ServerProcess) -> ServerProcess:
    """The server planning with the stand-in (overrides conftest's default server)."""
    return module_server


TABLES = ("prds", "enhancements", "comprehension_tests")


def stored(server) -> list[int]:
    """How many PRDs, enhancements and tests the server's database holds."""
    with sqlite3.connect(f"file:{server.db}?mode=ro", uri=True) as db:
        return [db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in TABLES]


async def snapshot(stub, server) -> tuple[list[bytes], int, list[int]]:
    return await all_tasks(stub), await log_head(stub), stored(server)


async def assert_nothing_written(stub, server, before) -> None:
    tasks, head, rows = before
    assert await all_tasks(stub) == tasks
    await assert_no_events_after(stub, head)
    assert stored(server) == rows


@pytest.fixture
def prd(server: ServerProcess, request: pytest.FixtureRequest) -> str:
    """This test's own PRD file, so that no other test's tasks are its PRD's."""
    path = f"{re.sub(r'[^A-Za-z0-9_]+', '_', request.node.name)}.md"
    (server.root / path).write_text(PRD)
    return path


def generate(stub, prd_id: str, **fields):
    return stub.GenerateTasksFromPRD(pb.GenerateTasksFromPRDRequest(prd_id=prd_id, **fields))


def orchestrate(stub, task_id: str, **fields):
    return stub.OrchestrateTask(pb.OrchestrateTaskRequest(task_id=task_id, **fields))


# --- answers that validate ----------------------------------------------------------


async def test_generated_tasks_say_ollama_and_the_model_in_the_response_and_every_event(
    stub, ollama, prd
):
    ollama.script(valid(PLAN))
    events = await subscribe_live(stub)
    reply = await generate(stub, prd, model="llama3.1")
    created = await read_events(events, 2)
    events.cancel()
    assert (reply.planner, reply.model) == ("ollama", "llama3.1")
    first, second = reply.tasks
    assert (second.assignee, second.due_date, list(second.dependencies)) == (
        "bob",
        "2030-04-01",
        [first.id],
    )
    for event in created:
        assert dict(event.metadata) == {
            "planner": "ollama",
            "model": "llama3.1",
            "prd_id": reply.prd_id,
        }
    (chat,) = ollama.chats
    assert (chat["stream"], chat["options"]) == (False, {"temperature": 0})
    assert "Take card payments" in chat["messages"][-1]["content"]


async def test_an_empty_model_asks_the_servers_default_model(stub, ollama, prd):
    ollama.script(valid(PLAN))
    reply = await generate(stub, prd)
    assert (reply.planner, reply.model) == ("ollama", "llama3.1")


async def test_the_model_named_offline_is_planned_by_the_built_in_planner(stub, ollama, prd):
    reply = await generate(stub, prd, model="offline")
    assert (reply.planner, reply.model) == ("offline", "offline")
    assert [t.title for t in reply.tasks] == ["Take card payments", "Send receipts"]
    assert ollama.paths == []


async def test_an_invalid_answer_is_retried_and_the_valid_one_used(stub, ollama, prd):
    ollama.script(
        Reply(content="{not json"),
        Reply(content=f"<think>two tasks</think>\n```json\n{json.dumps(PLAN)}\n```"),
    )
    reply = await generate(stub, prd)
    assert reply.tasks_generated == 2
    assert "not JSON" in ollama.chats[1]["messages"][-1]["content"]


async def test_an_orchestration_by_ollama_says_so_in_its_result_and_events(stub, ollama):
    task = (await stub.AddTask(pb.AddTaskRequest(title="Take card payments", assignee="bob"))).task
    ollama.script(valid(ENHANCEMENT), valid(TEST))
    events = await subscribe_live(stub)
    reply = await orchestrate(stub, task.id, model="llama3.1")
    logged = await read_events(events, 4)
    events.cancel()
    result = reply.result
    assert (result.routing_decision, result.planner, result.model) == (
        "enhance",
        "ollama",
        "llama3.1",
    )
    assert (result.enhancement.content, result.enhancement.model) == (
        "- [ ] PCI compliant",
        "llama3.1",
    )
    assert (result.comprehension_test.correct_answer, result.comprehension_test.planner) == (
        "PCI DSS",
        "ollama",
    )
    assert logged[-1].event_type == pb.TASK_EVENT_TYPE_ORCHESTRATED
    assert (logged[-1].metadata["planner"], logged[-1].metadata["model"]) == (
        "ollama",
        "llama3.1",
    )


async def test_a_decomposition_by_ollama_creates_the_models_subtasks(stub, ollama):
    task = (
        await stub.AddTask(pb.AddTaskRequest(title="Migrate the billing database to Postgres"))
    ).task
    parts = {"subtasks": [{"title": "Schema"}, {"title": "Copy"}, {"title": "Switch over"}]}
    ollama.script(valid(parts))
    events = await subscribe_live(stub)
    reply = await orchestrate(stub, task.id)
    logged = await read_events(events, 1 + 3 + 3)
    events.cancel()
    assert [s.title for s in reply.result.subtasks] == ["Schema", "Copy", "Switch over"]
    assert reply.task.status == pb.TASK_STATUS_DECOMPOSED
    assert kinds(logged)[-2:] == ["TASK_EVENT_TYPE_DECOMPOSED", "TASK_EVENT_TYPE_ORCHESTRATED"]
    assert {
        e.metadata["model"] for e in logged if e.event_type != pb.TASK_EVENT_TYPE_STATUS_CHANGED
    } == {"llama3.1"}


# --- failures: the documented code, and nothing written ------------------------------


async def test_ollama_not_running_is_unavailable_naming_the_url(project):
    url = f"http://127.0.0.1:{unused_port()}"
    server = ollama_server(project, url).start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = rigger_pb2_grpc.RiggerServiceStub(channel)
            before = await snapshot(stub, server)
            await fails(generate(stub, "prd.md"), grpc.StatusCode.UNAVAILABLE, url, "ollama serve")
            task = (await stub.AddTask(pb.AddTaskRequest(title="T"))).task
            before = await snapshot(stub, server)
            await fails(orchestrate(stub, task.id), grpc.StatusCode.UNAVAILABLE, url)
            await assert_nothing_written(stub, server, before)
    finally:
        server.stop()


async def test_a_model_that_is_not_pulled_is_failed_precondition_naming_ollama_pull(
    stub, server, ollama, prd
):
    before = await snapshot(stub, server)
    await fails(
        generate(stub, prd, model="mistral"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "'mistral'",
        "ollama pull mistral",
    )
    await assert_nothing_written(stub, server, before)
    assert ollama.chats == []


async def test_answers_that_never_validate_are_failed_precondition_with_the_first_error(
    stub, server, ollama, prd
):
    ollama.script(valid({"tasks": []}), Reply(content="still not json"), Reply(content="no"))
    before = await snapshot(stub, server)
    await fails(
        generate(stub, prd),
        grpc.StatusCode.FAILED_PRECONDITION,
        "'llama3.1'",
        "3 attempts",
        "tasks: List should have at least 1 item",
    )
    assert len(ollama.chats) == 3
    await assert_nothing_written(stub, server, before)


@pytest.mark.parametrize(
    "fields",
    [{"replace_existing": True}, {"mode": pb.GENERATION_MODE_SYNC}],
    ids=["replace", "sync"],
)
async def test_a_regeneration_whose_answers_never_validate_leaves_every_old_task_live(
    stub, server, ollama, prd, fields
):
    old = await generate(stub, prd, model="offline")
    ollama.script(Reply(content="not json"), Reply(content="no"), Reply(content="still no"))
    before = await snapshot(stub, server)
    await fails(generate(stub, prd, **fields), grpc.StatusCode.FAILED_PRECONDITION, "3 attempts")
    await assert_nothing_written(stub, server, before)
    for task in old.tasks:
        kept = (await stub.GetTask(pb.GetTaskRequest(task_id=task.id))).task
        assert (kept.status, kept.version) == (pb.TASK_STATUS_TODO, 1)


async def test_a_sync_given_the_same_answer_again_keeps_every_task(stub, server, ollama, prd):
    ollama.script(valid(PLAN), valid(PLAN))
    first = await generate(stub, prd)
    before = await snapshot(stub, server)
    again = await generate(stub, prd, mode=pb.GENERATION_MODE_SYNC)
    assert [(r.task.id, r.outcome) for r in again.results] == [
        (t.id, pb.GENERATION_OUTCOME_KEPT) for t in first.tasks
    ]
    assert (again.planner, again.model) == ("ollama", "llama3.1")
    tasks, head, _ = before  # the path is stored as a PRD again, as ParsePRD would
    assert await all_tasks(stub) == tasks
    await assert_no_events_after(stub, head)


async def test_an_ollama_server_error_is_unavailable_with_its_message(stub, server, ollama, prd):
    ollama.script(Reply(status=500, error="model runner has unexpectedly stopped"))
    before = await snapshot(stub, server)
    await fails(
        generate(stub, prd), grpc.StatusCode.UNAVAILABLE, ollama.url, "unexpectedly stopped"
    )
    await assert_nothing_written(stub, server, before)


async def test_a_model_slower_than_the_calls_deadline_is_deadline_exceeded(
    stub, server, ollama, prd
):
    ollama.script(Reply(content=json.dumps(PLAN), delay=60))
    before = await snapshot(stub, server)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GenerateTasksFromPRD(pb.GenerateTasksFromPRDRequest(prd_id=prd), timeout=1)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await assert_nothing_written(stub, server, before)


async def test_a_failure_in_the_second_step_leaves_the_task_untouched(stub, server, ollama):
    task = (await stub.AddTask(pb.AddTaskRequest(title="Send receipts", assignee="bob"))).task
    ollama.script(valid(ENHANCEMENT), Reply(status=500, error="out of memory"))
    before = await snapshot(stub, server)
    await fails(orchestrate(stub, task.id), grpc.StatusCode.UNAVAILABLE, "out of memory")
    await assert_nothing_written(stub, server, before)
    assert (await stub.GetTask(pb.GetTaskRequest(task_id=task.id))).task.version == 1


# --- no lock held while the model thinks --------------------------------------------


async def test_of_two_concurrent_orchestrations_of_a_task_one_wins_the_other_is_aborted(
    stub, ollama
):
    task = (await stub.AddTask(pb.AddTaskRequest(title="Send receipts", assignee="bob"))).task
    release = threading.Event()
    ollama.script(
        Reply(content=json.dumps(ENHANCEMENT), release=release),
        Reply(content=json.dumps(ENHANCEMENT), release=release),
        valid(TEST),
        valid(TEST),
    )
    calls = [asyncio.ensure_future(orchestrate(stub, task.id)) for _ in range(2)]
    # Both read the task and are inside the model: neither holds a lock.
    await wait_until_async(lambda: len(ollama.chats) == 2, "len(ollama.chats) == 2")
    other = await stub.AddTask(pb.AddTaskRequest(title="written meanwhile"))
    assert other.task.version == 1
    release.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    won = [o for o in outcomes if isinstance(o, pb.OrchestrateTaskResponse)]
    lost = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert lost[0].code() == grpc.StatusCode.ABORTED
    assert "changed while it was being orchestrated" in lost[0].details()
    stored = (await stub.GetTask(pb.GetTaskRequest(task_id=task.id))).task
    assert stored == won[0].task
    assert stored.version == 4


async def test_an_update_while_the_model_thinks_aborts_the_orchestration(stub, ollama):
    task = (await stub.AddTask(pb.AddTaskRequest(title="Send receipts", assignee="bob"))).task
    release = threading.Event()
    ollama.script(Reply(content=json.dumps(ENHANCEMENT), release=release), valid(TEST))
    call = asyncio.ensure_future(orchestrate(stub, task.id))
    await wait_until_async(lambda: len(ollama.chats) == 1, "len(ollama.chats) == 1")
    await stub.UpdateTask(pb.UpdateTaskRequest(task_id=task.id, assignee="carol"))
    release.set()
    await fails(call, grpc.StatusCode.ABORTED, task.id, "nothing was written")
    stored = (await stub.GetTask(pb.GetTaskRequest(task_id=task.id))).task
    assert (stored.assignee, stored.version, stored.status) == ("carol", 2, pb.TASK_STATUS_TODO)


# --- hostile answers: huge, many, hung -----------------------------------------------

HUGE = 256 * 1024
MIB = 1024 * 1024
# The issue's answer: a 256 KiB assignee and 20 context file paths of 256 KiB each.
OVERSIZED = {
    "tasks": [
        {
            "title": "Ship it",
            "assignee": "a" * HUGE,
            "context_files": [f"{i}/" + "p" * HUGE for i in range(20)],
        }
    ]
}


async def assert_every_event_reaches_a_default_client(stub) -> None:
    """Plain and batched replays from the start deliver the whole log; none is stuck."""
    head = await log_head(stub)
    assert len(await replay_all(stub, head)) == head
    request = pb.SubscribeToTaskEventBatchesRequest(after_sequence=0)
    batches = stub.SubscribeToTaskEventBatches(request)
    seen = 0
    try:
        while seen < head:
            batch = await asyncio.wait_for(batches.read(), WAIT)
            assert batch is not grpc.aio.EOF
            seen += len(batch.events)
    finally:
        batches.cancel()


async def test_the_issues_5_mb_answer_is_refused_by_the_answer_cap_and_writes_nothing(
    stub, server, ollama, prd
):
    ollama.script(valid(OVERSIZED))
    before = await snapshot(stub, server)
    await fails(
        generate(stub, prd), grpc.StatusCode.FAILED_PRECONDITION, "--max-model-answer-bytes"
    )
    await assert_nothing_written(stub, server, before)
    await assert_every_event_reaches_a_default_client(stub)


async def test_an_answer_over_the_request_limits_is_sent_back_and_never_stored(project, ollama):
    flags = ("--max-model-answer-bytes", str(16 * MIB))
    async with own_server(project, ollama, *flags) as (stub, server):
        ollama.script(valid(OVERSIZED), valid(OVERSIZED), valid(OVERSIZED))
        before = await snapshot(stub, server)
        details = await fails(
            generate(stub, "prd.md"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "3 attempts",
            "tasks.0.assignee",
            "at most 4096 characters",
        )
        assert len(details) < 1000
        assert "4096" in ollama.chats[1]["messages"][-1]["content"]
        await assert_nothing_written(stub, server, before)
        ollama.script(valid(PLAN))
        assert (await generate(stub, "prd.md")).tasks_generated == 2
        await assert_every_event_reaches_a_default_client(stub)


async def test_health_and_add_task_answer_while_hostile_answers_are_read(stub, server, ollama, prd):
    # The issue's answer had 20 000 blocks (8.6 s of frozen loop, each
    # attempt); 40 000 froze it 16.4 s.
    hostile = " " * MIB + "<think></think>" * 40_000
    release = threading.Event()
    ollama.script(Reply(content=hostile, release=release), *[Reply(content=hostile)] * 2)
    call = asyncio.ensure_future(generate(stub, prd))
    await wait_until_async(lambda: len(ollama.chats) == 1, "len(ollama.chats) == 1")
    release.set()
    async with grpc.aio.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answered = 0
        while not call.done() or answered == 0:
            # Each within the streams' usual wait: a frozen loop takes longer.
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=WAIT)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            await stub.AddTask(pb.AddTaskRequest(title="meanwhile"), timeout=WAIT)
            answered += 1
    await fails(call, grpc.StatusCode.FAILED_PRECONDITION, "3 attempts", "empty")
    assert len(ollama.chats) == 3


async def test_a_64_mib_answer_is_failed_precondition_naming_the_cap_and_its_flag(
    stub, server, ollama, prd
):
    ollama.script(Reply(content=json.dumps(PLAN), padding=64 * MIB))
    before = await snapshot(stub, server)
    await fails(
        generate(stub, prd),
        grpc.StatusCode.FAILED_PRECONDITION,
        f"more than {4 * MIB} bytes",
        "rig grpc --max-model-answer-bytes",
    )
    await wait_until_async(lambda: ollama.answered == 1, "ollama.answered == 1")
    assert ollama.sent < 32 * MIB
    await assert_nothing_written(stub, server, before)


@pytest.mark.parametrize(
    ("status", "code"),
    [(500, grpc.StatusCode.UNAVAILABLE), (400, grpc.StatusCode.FAILED_PRECONDITION)],
)
async def test_an_ollama_error_body_of_64_kib_arrives_with_its_documented_code(
    stub, server, ollama, prd, status, code
):
    ollama.script(Reply(status=status, error="the runner said: " + "é" * 64 * 1024))
    before = await snapshot(stub, server)
    await fails(generate(stub, prd), code, "the runner said")
    await assert_nothing_written(stub, server, before)


async def test_a_models_200_task_dependency_cycle_arrives_as_failed_precondition(
    stub, server, ollama, prd
):
    cycle = {
        "tasks": [
            {"title": f"Task {i} " + "é" * 180, "depends_on": [i % 200 + 1]} for i in range(1, 201)
        ]
    }
    ollama.script(valid(cycle), valid(cycle), valid(cycle))
    before = await snapshot(stub, server)
    await fails(generate(stub, prd), grpc.StatusCode.FAILED_PRECONDITION, "cycle", "more tasks")
    await assert_nothing_written(stub, server, before)


async def test_hung_calls_at_a_models_bound_are_refused_at_once_and_other_models_answer(
    project, ollama
):
    ollama.models.append("qwen3:8b")
    release = threading.Event()
    hung: list[asyncio.Future] = []
    try:
        async with own_server(project, ollama, "--max-model-calls", "4") as (stub, _):
            ollama.script(*(Reply(content=json.dumps(PLAN), release=release) for _ in range(2)))
            hung += [asyncio.ensure_future(generate(stub, "prd.md")) for _ in range(2)]
            await wait_until_async(lambda: len(ollama.chats) == 2, "len(ollama.chats) == 2")
            await fails(
                generate(stub, "prd.md"),
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "'llama3.1'",
                "--max-model-calls",
            )
            ollama.script(valid(PLAN))
            reply = await generate(stub, "prd.md", model="qwen3:8b")
            assert reply.model == "qwen3:8b"
            release.set()
            await asyncio.gather(*hung, return_exceptions=True)
    finally:
        release.set()
        ollama.models.remove("qwen3:8b")


async def test_a_decomposition_past_the_subtask_limit_by_a_subtask_added_meanwhile_writes_nothing(
    project, ollama
):
    async with own_server(project, ollama, "--max-subtasks", "3") as (stub, server):
        task = await add(stub, "Migrate the billing database to Postgres")
        parts = {"subtasks": [{"title": "Schema"}, {"title": "Copy"}, {"title": "Switch over"}]}
        release = threading.Event()
        ollama.script(Reply(content=json.dumps(parts), release=release))
        call = asyncio.ensure_future(orchestrate(stub, task.id))
        await wait_until_async(lambda: len(ollama.chats) == 1, "len(ollama.chats) == 1")
        # A child does not change its parent's version: only a count can tell.
        await add(stub, "added by hand meanwhile", parent_task_id=task.id)
        before = await snapshot(stub, server)
        release.set()
        await fails(call, grpc.StatusCode.RESOURCE_EXHAUSTED, "--max-subtasks", "has 1 subtasks")
        await assert_nothing_written(stub, server, before)
        stored = (await stub.GetTask(pb.GetTaskRequest(task_id=task.id))).task
        assert (len(stored.subtask_ids), stored.status) == (1, pb.TASK_STATUS_TODO)


async def test_an_ollama_error_that_is_not_valid_unicode_arrives_as_unavailable(
    stub, server, ollama, prd
):
    # A JSON escape can name half a surrogate pair, which no UTF-8 can carry.
    ollama.script(Reply(status=500, error="broken \ud800 runner"))
    await fails(generate(stub, prd), grpc.StatusCode.UNAVAILABLE, "broken ? runner")
