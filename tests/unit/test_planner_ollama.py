"""The Ollama planner against a stand-in that speaks Ollama's API on a real port."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
from ollama_standin import OllamaStandIn, Reply, valid
from rigger_server.domain import Task, TaskStatus
from rigger_server.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    PlannerOutputInvalid,
    ResourceExhausted,
    Unavailable,
)
from rigger_server.limits import MIB, Limits
from rigger_server.planner import (
    Deadline,
    ModelSelector,
    OfflinePlanner,
    OllamaPlanner,
    PlannerConfig,
    TaskContext,
    add_planner_flags,
    build_planner,
    config_from_args,
    ollama_url,
)
from rigger_server.planner.answers import AnswerInvalid, TaskListAnswer, schema_of, strip_wrapping
from rigger_server.prd import parse_prd

from testkit.wait import wait_until_async

PRD = parse_prd(
    "# Checkout\n\n## Objectives\n\n- Take card payments\n- Send receipts\n\n"
    "## Constraints\n\n- PCI compliant\n"
)
PLAN = {
    "tasks": [
        {"title": "Design the payment schema", "description": "Tables for payments"},
        {
            "title": "Build the payment API",
            "description": "Handlers",
            "assignee": "bob",
            "due_date": "2025-04-01",
            "context_files": ["api/pay.py"],
            "depends_on": [1],
        },
    ]
}
TASK = Task(
    id="task-1",
    title="Build the payment API",
    status=TaskStatus.TODO,
    created_at="2025-01-01T00:00:00.000000Z",
    updated_at="2025-01-01T00:00:00.000000Z",
    version=1,
    assignee="bob",
    due_date="2025-04-01",
)
CONTEXT = TaskContext(task=TASK, prd=PRD)


@pytest.fixture
def ollama() -> Iterator[OllamaStandIn]:
    with OllamaStandIn(models=("llama3.1:latest", "qwen3:8b")) as standin:
        yield standin


@pytest.fixture
async def planner(ollama: OllamaStandIn) -> AsyncIterator[OllamaPlanner]:
    planner = OllamaPlanner(ollama.url, default_model="llama3.1")
    yield planner
    await planner.aclose()


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- answers that validate -------------------------------------------------------


async def test_a_valid_answer_becomes_a_plan_that_names_ollama_and_the_model(planner, ollama):
    ollama.script(valid(PLAN))
    plan = await planner.generate_tasks(PRD, model="llama3.1")
    assert (plan.planner, plan.model) == ("ollama", "llama3.1")
    first, second = plan.tasks
    assert first.title == "Design the payment schema"
    assert (second.assignee, second.due_date, second.context_files) == (
        "bob",
        "2025-04-01",
        ("api/pay.py",),
    )
    assert second.dependencies == (0,)


async def test_complexity_is_the_heuristic_not_the_models(planner, ollama):
    ollama.script(valid(PLAN))
    plan = await planner.generate_tasks(PRD)
    # No assignee, no due date: 3 + 1 + 1.
    assert plan.tasks[0].complexity == 5


async def test_the_chat_request_is_unstreamed_schema_constrained_and_at_temperature_0(
    planner, ollama
):
    ollama.script(valid(PLAN))
    await planner.generate_tasks(PRD, model="qwen3:8b")
    (request,) = ollama.chats
    assert request["model"] == "qwen3:8b"
    assert request["stream"] is False
    assert request["format"] == schema_of(TaskListAnswer)
    assert request["options"] == {"temperature": 0}
    assert "Take card payments" in request["messages"][-1]["content"]


async def test_an_empty_model_name_uses_the_default_model(planner, ollama):
    ollama.script(valid(PLAN))
    await planner.generate_tasks(PRD, model="")
    assert ollama.chats[0]["model"] == "llama3.1"


async def test_a_fenced_answer_is_read(planner, ollama):
    ollama.script(Reply(content=f"Here is the plan:\n```json\n{json.dumps(PLAN)}\n```\n"))
    plan = await planner.generate_tasks(PRD)
    assert len(plan.tasks) == 2


async def test_a_think_block_is_taken_off(planner, ollama):
    ollama.script(
        Reply(content=f"<think>Two tasks, one after the other.</think>\n{json.dumps(PLAN)}")
    )
    plan = await planner.generate_tasks(PRD)
    assert len(plan.tasks) == 2


# --- answers that do not validate ------------------------------------------------


async def test_an_invalid_answer_is_sent_back_with_what_failed_and_a_valid_retry_is_used(
    planner, ollama
):
    ollama.script(Reply(content="{not json"), valid(PLAN))
    plan = await planner.generate_tasks(PRD)
    assert len(plan.tasks) == 2
    retry = ollama.chats[1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": "{not json"}
    assert "not JSON" in retry[-1]["content"]


async def test_an_answer_that_never_validates_fails_after_two_retries_with_the_first_error(
    planner, ollama
):
    ollama.script(valid({"tasks": []}), Reply(content="still not json"), Reply(content="nope"))
    with pytest.raises(PlannerOutputInvalid) as caught:
        await planner.generate_tasks(PRD)
    assert len(ollama.chats) == 3
    assert caught.value.attempts == 3
    assert "tasks" in caught.value.first_error
    assert "llama3.1" in str(caught.value)


async def test_a_dependency_cycle_is_an_invalid_answer(planner, ollama):
    cycle = {
        "tasks": [
            {"title": "A", "depends_on": [2]},
            {"title": "B", "depends_on": [1]},
        ]
    }
    ollama.script(valid(cycle), valid(PLAN))
    await planner.generate_tasks(PRD)
    assert "cycle" in ollama.chats[1]["messages"][-1]["content"]


async def test_a_dependency_on_a_task_not_in_the_list_is_an_invalid_answer(planner, ollama):
    unknown = {"tasks": [{"title": "A", "depends_on": [7]}]}
    ollama.script(valid(unknown), valid(unknown), valid(unknown))
    with pytest.raises(PlannerOutputInvalid) as caught:
        await planner.generate_tasks(PRD)
    assert "#7" in caught.value.first_error


async def test_an_assignee_outside_the_personas_is_an_invalid_answer(ollama):
    planner = OllamaPlanner(ollama.url, personas=("alice", "bob"))
    stranger = {"tasks": [{"title": "A", "assignee": "mallory"}]}
    ollama.script(valid(stranger), valid(PLAN))
    try:
        plan = await planner.generate_tasks(PRD)
    finally:
        await planner.aclose()
    assert "mallory" in ollama.chats[1]["messages"][-1]["content"]
    assert plan.tasks[1].assignee == "bob"


# --- the orchestration steps -----------------------------------------------------


async def test_enhance_returns_the_models_enhancement(planner, ollama):
    ollama.script(valid({"enhancement_type": "acceptance_criteria", "content": "- [ ] PCI"}))
    enhancement = await planner.enhance(CONTEXT)
    assert (enhancement.enhancement_type, enhancement.content) == (
        "acceptance_criteria",
        "- [ ] PCI",
    )
    assert (enhancement.planner, enhancement.model) == ("ollama", "llama3.1")


async def test_a_multiple_choice_answer_outside_its_options_is_invalid(planner, ollama):
    outside = {"question": "Q?", "options": ["a", "b"], "correct_answer": "c"}
    inside = {"question": "Q?", "options": ["a", "b", "c"], "correct_answer": "c"}
    ollama.script(valid(outside), valid(inside))
    test = await planner.comprehension_test(CONTEXT, None, "multiple_choice")
    assert (test.test_type, test.options, test.correct_answer) == (
        "multiple_choice",
        ("a", "b", "c"),
        "c",
    )
    assert "correct_answer" in ollama.chats[1]["messages"][-1]["content"]


async def test_a_short_answer_test_has_no_options(planner, ollama):
    ollama.script(valid({"question": "Which constraint?", "correct_answer": "PCI compliant"}))
    test = await planner.comprehension_test(CONTEXT, None, "short_answer")
    assert (test.options, test.correct_answer) == ((), "PCI compliant")


async def test_an_unknown_test_type_is_refused_before_asking(planner, ollama):
    with pytest.raises(InvalidArgument, match="short_answer, multiple_choice"):
        await planner.comprehension_test(CONTEXT, None, "essay")
    assert ollama.chats == []


async def test_a_decomposition_needs_three_to_five_subtasks_each_simpler(planner, ollama):
    two = {"subtasks": [{"title": "A"}, {"title": "B"}]}
    three = {"subtasks": [{"title": "Schema"}, {"title": "Handlers"}, {"title": "Tests"}]}
    ollama.script(valid(two), valid(three))
    decomposition = await planner.decompose(CONTEXT)
    assert [s.title for s in decomposition.subtasks] == ["Schema", "Handlers", "Tests"]
    assert all(s.assignee == "bob" for s in decomposition.subtasks)
    assert "subtasks" in ollama.chats[1]["messages"][-1]["content"]


# --- Ollama missing, failing, slow -----------------------------------------------


async def test_a_model_that_is_not_pulled_is_a_failed_precondition_naming_ollama_pull(
    planner, ollama
):
    with pytest.raises(FailedPrecondition) as caught:
        await planner.generate_tasks(PRD, model="mistral")
    assert "mistral" in str(caught.value)
    assert "ollama pull mistral" in str(caught.value)
    assert ollama.chats == []


async def test_a_404_from_chat_is_a_failed_precondition(planner, ollama):
    # Listed by /api/tags, then removed (`ollama rm`) before the chat.
    ollama.script(Reply(status=404, error='model "llama3.1" not found, try pulling it first'))
    with pytest.raises(FailedPrecondition, match=r"ollama pull llama3\.1"):
        await planner.generate_tasks(PRD)


async def test_a_server_error_is_unavailable_with_ollamas_message(planner, ollama):
    ollama.script(Reply(status=500, error="model runner has unexpectedly stopped"))
    with pytest.raises(Unavailable) as caught:
        await planner.generate_tasks(PRD)
    assert ollama.url in str(caught.value)
    assert "unexpectedly stopped" in str(caught.value)


async def test_ollama_not_running_is_unavailable_naming_the_url():
    url = f"http://127.0.0.1:{unused_port()}"
    planner = OllamaPlanner(url)
    try:
        with pytest.raises(Unavailable) as caught:
            await planner.generate_tasks(PRD)
    finally:
        await planner.aclose()
    assert url in str(caught.value)


async def test_an_answer_slower_than_the_deadline_is_deadline_exceeded(planner, ollama):
    ollama.script(Reply(content=json.dumps(PLAN), delay=60))
    with pytest.raises(DeadlineExceeded) as caught:
        await planner.generate_tasks(PRD, deadline=Deadline.after(0.5))
    assert "deadline" in str(caught.value)


async def test_a_deadline_already_passed_asks_nothing(planner, ollama):
    with pytest.raises(DeadlineExceeded):
        await planner.generate_tasks(PRD, deadline=Deadline.after(-1))
    assert ollama.paths == []


async def test_the_version_is_read_from_ollama(planner):
    assert await planner.version() == "0.6.2"


# --- Ollama hostile: huge, hung, malformed -----------------------------------------

HUGE = 256 * 1024
# The answer: a 256 KiB assignee and 20 context files of 256 KiB each.
OVERSIZED = {
    "tasks": [
        {
            "title": "Ship it",
            "assignee": "a" * HUGE,
            "context_files": [f"{i}/" + "p" * HUGE for i in range(20)],
        }
    ]
}


async def test_an_answer_with_values_over_the_request_limits_is_sent_back_to_the_model(ollama):
    # 5.3 MB: read whole only with a cap above the default 4 MiB.
    planner = OllamaPlanner(ollama.url, limits=Limits(max_model_answer_bytes=16 * MIB))
    ollama.script(valid(OVERSIZED), valid(PLAN))
    try:
        plan = await planner.generate_tasks(PRD)
    finally:
        await planner.aclose()
    assert [t.title for t in plan.tasks] == [t["title"] for t in PLAN["tasks"]]
    told = ollama.chats[1]["messages"][-1]["content"]
    assert "tasks.0.assignee" in told and "4096" in told
    assert len(told) < 2000


async def test_the_servers_own_field_limit_holds_a_models_answer_too(ollama):
    planner = OllamaPlanner(ollama.url, limits=Limits(max_field_chars=100))
    long_name = {"tasks": [{"title": "Ship it", "assignee": "b" * 150}]}
    ollama.script(valid(long_name), valid(long_name), valid(long_name))
    try:
        with pytest.raises(PlannerOutputInvalid) as caught:
            await planner.generate_tasks(PRD)
    finally:
        await planner.aclose()
    assert "tasks.0 ('Ship it').assignee" in caught.value.first_error
    assert "--max-field-length" in caught.value.first_error


async def test_a_models_long_description_is_clipped_to_the_field_limit(ollama):
    planner = OllamaPlanner(ollama.url, limits=Limits(max_field_chars=100))
    ollama.script(valid({"tasks": [{"title": "Ship it", "description": "d" * 3000}]}))
    try:
        plan = await planner.generate_tasks(PRD)
    finally:
        await planner.aclose()
    (task,) = plan.tasks
    assert len(task.reasoning) == 100 and task.reasoning.endswith("\u2026")


def test_think_blocks_are_taken_off_in_one_pass_however_many():
    answer = " " * MIB + "<think></think>" * 20_000 + '<think>a</think>{"x": 1}<think>b</think>'
    assert strip_wrapping(answer) == '{"x": 1}'
    with pytest.raises(AnswerInvalid, match="never ends"):
        strip_wrapping("<think></think>" * 3 + "<think>unfinished")


async def test_an_answer_larger_than_the_cap_is_failed_precondition_and_not_read_whole(ollama):
    planner = OllamaPlanner(ollama.url, limits=Limits(max_model_answer_bytes=MIB))
    ollama.script(Reply(content=json.dumps(PLAN), padding=64 * MIB))
    try:
        with pytest.raises(FailedPrecondition) as caught:
            await planner.generate_tasks(PRD)
    finally:
        await planner.aclose()
    assert str(MIB) in str(caught.value)
    assert "--max-model-answer-bytes" in str(caught.value)
    await wait_until_async(lambda: ollama.answered == 1, "ollama.answered == 1")
    # The socket's buffers take some megabytes, never the whole answer.
    assert ollama.sent < 32 * MIB


async def test_an_answer_within_the_cap_is_read(ollama):
    planner = OllamaPlanner(ollama.url, limits=Limits(max_model_answer_bytes=MIB))
    ollama.script(Reply(content=json.dumps(PLAN), padding=MIB - 2048))
    try:
        plan = await planner.generate_tasks(PRD)
    finally:
        await planner.aclose()
    assert len(plan.tasks) == 2


async def test_a_tags_listing_over_its_cap_is_failed_precondition(planner, ollama):
    ollama.tags_padding = 2 * MIB
    with pytest.raises(FailedPrecondition, match="/api/tags with more than"):
        await planner.generate_tasks(PRD)
    assert ollama.chats == []


async def test_a_huge_error_body_is_quoted_in_200_characters(planner, ollama):
    ollama.script(Reply(status=500, error="model runner crashed: " + "x" * 64 * 1024))
    with pytest.raises(Unavailable) as caught:
        await planner.generate_tasks(PRD)
    assert "model runner crashed" in str(caught.value)
    assert len(str(caught.value)) < 500


async def test_a_body_that_is_not_ollamas_json_is_unavailable(planner, ollama):
    ollama.script(Reply(raw=b"<html>proxy error</html>"))
    with pytest.raises(Unavailable, match="not Ollama's JSON"):
        await planner.generate_tasks(PRD)


async def test_calls_beyond_a_models_share_are_resource_exhausted_at_once(ollama):
    planner = OllamaPlanner(ollama.url, limits=Limits(max_model_calls=4))
    release = threading.Event()
    ollama.script(*(Reply(content=json.dumps(PLAN), release=release) for _ in range(2)))
    held = [asyncio.ensure_future(planner.generate_tasks(PRD)) for _ in range(2)]
    try:
        await wait_until_async(lambda: len(ollama.chats) == 2, "len(ollama.chats) == 2")
        with pytest.raises(ResourceExhausted) as caught:
            await planner.generate_tasks(PRD)
        assert "'llama3.1'" in str(caught.value) and "--max-model-calls" in str(caught.value)
        # Another model has its own half.
        ollama.script(valid(PLAN))
        plan = await planner.generate_tasks(PRD, model="qwen3:8b")
        assert plan.model == "qwen3:8b"
    finally:
        release.set()
        await asyncio.gather(*held)
        await planner.aclose()


async def test_calls_beyond_the_total_are_resource_exhausted_whatever_the_model(ollama):
    planner = OllamaPlanner(ollama.url, limits=Limits(max_model_calls=2))
    release = threading.Event()
    ollama.script(*(Reply(content=json.dumps(PLAN), release=release) for _ in range(2)))
    held = [
        asyncio.ensure_future(planner.generate_tasks(PRD, model=model))
        for model in ("llama3.1", "qwen3:8b")
    ]
    try:
        await wait_until_async(lambda: len(ollama.chats) == 2, "len(ollama.chats) == 2")
        for model in ("llama3.1", "qwen3:8b"):
            with pytest.raises(ResourceExhausted, match="2 model calls are in flight"):
                await planner.generate_tasks(PRD, model=model)
        release.set()
        await asyncio.gather(*held)
        # The slots came back.
        ollama.script(valid(PLAN))
        assert len((await planner.generate_tasks(PRD)).tasks) == 2
    finally:
        release.set()
        await asyncio.gather(*held, return_exceptions=True)
        await planner.aclose()


# --- which planner runs ----------------------------------------------------------


async def test_with_the_ollama_planner_the_model_named_offline_runs_the_built_in_planner(ollama):
    planner = build_planner(PlannerConfig(planner="ollama", ollama_url=ollama.url))
    try:
        plan = await planner.generate_tasks(PRD, model="offline")
    finally:
        await planner.aclose()
    assert (plan.planner, plan.model) == ("offline", "offline")
    assert ollama.paths == []


async def test_with_the_ollama_planner_other_model_names_go_to_ollama(ollama):
    planner = build_planner(PlannerConfig(planner="ollama", ollama_url=ollama.url))
    assert isinstance(planner, ModelSelector)
    ollama.script(valid(PLAN))
    try:
        plan = await planner.generate_tasks(PRD, model="qwen3:8b")
    finally:
        await planner.aclose()
    assert (plan.planner, plan.model) == ("ollama", "qwen3:8b")


async def test_the_default_planner_is_offline_whatever_model_is_asked_for():
    planner = build_planner(PlannerConfig())
    assert isinstance(planner, OfflinePlanner)
    plan = await planner.generate_tasks(PRD, model="llama3.1")
    assert (plan.planner, plan.model) == ("offline", "offline")


@pytest.mark.parametrize(
    ("written", "url"),
    [
        ("localhost", "http://localhost:11434"),
        ("0.0.0.0:8080", "http://0.0.0.0:8080"),
        (":11500", "http://localhost:11500"),
        ("http://ollama.internal", "http://ollama.internal:80"),
        ("https://ollama.internal/base/", "https://ollama.internal:443/base"),
        ("[::1]:11434", "http://[::1]:11434"),
        ("http://127.0.0.1:11434/", "http://127.0.0.1:11434"),
    ],
)
def test_an_ollama_address_is_read_as_ollama_reads_ollama_host(written, url):
    assert ollama_url(written) == url


def test_the_ollama_url_flag_wins_over_ollama_host_which_wins_over_the_default():
    environ = {"OLLAMA_HOST": "gpu-box:11434"}
    assert PlannerConfig.from_flags("ollama", None, {}).ollama_url == "http://localhost:11434"
    assert PlannerConfig.from_flags("ollama", None, environ).ollama_url == "http://gpu-box:11434"
    flag = PlannerConfig.from_flags("ollama", "other:1234", environ)
    assert flag.ollama_url == "http://other:1234"


def test_an_unknown_planner_or_scheme_is_refused():
    with pytest.raises(ValueError, match="offline, ollama"):
        PlannerConfig.from_flags("gpt")
    with pytest.raises(ValueError, match="http or https"):
        ollama_url("ftp://host")


def test_rig_grpc_flags_make_the_planner_config():
    parser = argparse.ArgumentParser()
    add_planner_flags(parser)
    default = config_from_args(parser.parse_args([]), environ={})
    assert (default.planner, default.ollama_url) == ("offline", "http://localhost:11434")
    chosen = parser.parse_args(["--planner", "ollama", "--ollama-url", "gpu:9999"])
    assert config_from_args(chosen, environ={}) == PlannerConfig(
        planner="ollama", ollama_url="http://gpu:9999"
    )


def test_a_bad_ollama_url_flag_is_a_usage_error(capsys):
    parser = argparse.ArgumentParser()
    add_planner_flags(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--ollama-url", "ftp://x"])
    assert "http or https" in capsys.readouterr().err
