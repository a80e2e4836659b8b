"""The offline planner and the complexity heuristic, in-process."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import pathlib
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rigger_server.domain import Task, TaskStatus
from rigger_server.errors import DeadlineExceeded, InvalidArgument
from rigger_server.planner import (
    Deadline,
    OfflinePlanner,
    PlannedTask,
    TaskContext,
    orchestrate,
    route,
)
from rigger_server.planner.complexity import complexity, score
from rigger_server.prd import parse_prd

EXAMPLE = pathlib.Path(__file__).parents[2] / "examples" / "PRD.md"
planner = OfflinePlanner()


def task(title: str = "Write the docs", **fields) -> Task:
    base = {
        "id": "task-1",
        "title": title,
        "status": TaskStatus.TODO,
        "created_at": "2025-01-01T00:00:00.000000Z",
        "updated_at": "2025-01-01T00:00:00.000000Z",
        "version": 1,
    }
    return Task(**{**base, **fields})


def stored(plan_tasks: tuple[PlannedTask, ...]) -> tuple[Task, ...]:
    """The planned tasks as TaskBook would store them, ids t0, t1, ..."""
    return tuple(
        task(
            id=f"t{i}",
            title=p.title,
            assignee=p.assignee,
            due_date=p.due_date,
            reasoning=p.reasoning,
            complexity=p.complexity,
            context_files=p.context_files,
            dependencies=tuple(f"t{d}" for d in p.dependencies),
        )
        for i, p in enumerate(plan_tasks)
    )


async def generate(markdown: str):
    return await planner.generate_tasks(parse_prd(markdown))


# --- the complexity heuristic ----------------------------------------------------


def test_a_task_with_a_short_title_an_assignee_and_a_due_date_scores_the_base_3():
    assert score("Fix typo", assignee="ann", due_date="2025-01-01", reasoning=None).value == 3


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"title": "x" * 51}, 4),
        ({"title": "Refactoring the store"}, 5),
        ({"title": "Migrate to Postgres"}, 5),
        ({"title": "Architecture review"}, 5),
        ({"assignee": None}, 4),
        ({"assignee": "  "}, 4),
        ({"due_date": None}, 4),
        ({"reasoning": "r" * 201}, 5),
        ({"reasoning": "r" * 200}, 3),
    ],
)
def test_each_term_of_the_heuristic_adds_its_points(fields, expected):
    given = {"title": "Fix typo", "assignee": "ann", "due_date": "2025-01-01", "reasoning": ""}
    given.update(fields)
    title = given.pop("title")
    assert score(title, **given).value == expected


def test_every_term_at_once_scores_10_the_cap():
    scored = score("Rewrite " + "x" * 60, assignee=None, due_date=None, reasoning="r" * 300)
    assert scored.value == 10
    assert len(scored.reasons) == 6


@given(
    title=st.sampled_from(["Fix", "x" * 51, "Rewrite it", "ARCHITECT " + "y" * 50]),
    assignee=st.sampled_from([None, "", " ", "ann"]),
    due_date=st.sampled_from([None, "", "2025-01-01"]),
    reasoning=st.sampled_from([None, "", "r" * 200, "r" * 201]),
)
def test_the_plain_score_and_the_explained_score_agree(title, assignee, due_date, reasoning):
    fields = {"assignee": assignee, "due_date": due_date, "reasoning": reasoning}
    assert complexity(title, **fields) == score(title, **fields).value


def test_a_task_scoring_7_is_decomposed_and_one_scoring_6_enhanced():
    seven = route(task("Migrate the store", reasoning=None))  # 3 + 2 + 1 + 1
    six = route(task("Migrate the store", assignee="ann"))  # 3 + 2 + 1
    assert (seven.route, seven.score) == ("decompose", 7)
    assert (six.route, six.score) == ("enhance", 6)
    assert (seven.planner, seven.model) == ("offline", "offline")


# --- tasks from a PRD ------------------------------------------------------------


async def test_the_example_prd_becomes_its_task_list_as_written():
    plan = await planner.generate_tasks(parse_prd(EXAMPLE.read_text()))
    assert (plan.planner, plan.model) == ("offline", "offline")
    assert [(t.title, t.assignee, t.due_date, t.dependencies) for t in plan.tasks] == [
        ("Design the notification message format", "Alice", "2025-03-03", ()),
        (
            "Resume the event stream from the stored sequence in "
            "clients/python/rigger_client/watch.py",
            "bob",
            "2025-03-07",
            (),
        ),
        ("Post messages to the chat webhook", "Alice", "2025-03-10", (0,)),
        ("Add per-engineer mute settings", None, None, (2,)),
        (
            "Refactor the sidecar entry point to run the notifier beside the printer",
            None,
            None,
            (1, 2),
        ),
    ]


async def test_a_task_gets_its_own_paths_then_the_prds_shared_paths():
    plan = await planner.generate_tasks(parse_prd(EXAMPLE.read_text()))
    assert plan.tasks[1].context_files == (
        "clients/python/rigger_client/watch.py",
        "proto/rigger/v1/rigger.proto",
        "clients/python/rigger_client/",
    )


async def test_a_tasks_reasoning_says_where_it_is_written_and_lists_its_steps():
    plan = await planner.generate_tasks(parse_prd(EXAMPLE.read_text()))
    reasoning = plan.tasks[1].reasoning
    assert reasoning.startswith("From the PRD 'Sidecar Notifications', section 'Tasks', line 34.")
    assert "Steps: store the last sequence after each posted message;" in reasoning


async def test_planned_complexity_is_the_heuristics():
    plan = await planner.generate_tasks(parse_prd(EXAMPLE.read_text()))
    assert [t.complexity for t in plan.tasks] == [3, 4, 3, 5, 8]


async def test_a_checked_box_plans_a_task_that_is_done():
    plan = await generate("# T\n\n- [x] Pick a provider\n- [ ] Integrate it\n")
    assert [(t.title, t.done) for t in plan.tasks] == [
        ("Pick a provider", True),
        ("Integrate it", False),
    ]


async def test_without_task_lists_each_objective_is_a_task_with_constraints_and_stack():
    plan = await generate(
        "# Shop\n\n## Objectives\n\n- Take payments in `pay/api.py`\n- Send receipts\n\n"
        "## Tech Stack\n\n- Go\n\n## Constraints\n\n- PCI compliant\n"
    )
    assert [t.title for t in plan.tasks] == ["Take payments in pay/api.py", "Send receipts"]
    first = plan.tasks[0]
    assert first.reasoning == (
        "Objective 1 of 2 of the PRD 'Shop'. Constraints: PCI compliant. Tech stack: Go."
    )
    assert first.context_files == ("pay/api.py",)
    assert (first.assignee, first.due_date, first.dependencies) == (None, None, ())


async def test_a_prd_with_nothing_to_plan_is_invalid_argument_naming_prd_id():
    with pytest.raises(InvalidArgument) as caught:
        await generate("# Empty\n\nJust words.\n")
    assert caught.value.field == "prd_id"


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ("- [ ] A (after #3)\n- [ ] B\n", "refers to #3, but the tasks are #1 to #2"),
        ("- [ ] A, depends on Nothing\n", "depends on 'Nothing', which is not the title"),
        ("- [ ] A\n- [ ] A\n- [ ] B, depends on A\n", "the title of #1 and #2"),
        ("- [ ] A (after #1)\n", "task #1 'A' depends on itself"),
        (
            "- [ ] A (after #3)\n- [ ] B (after #1)\n- [ ] C (after #2)\n",
            "cycle: task #1 'A' -> task #3 'C' -> task #2 'B' -> task #1 'A'",
        ),
    ],
    ids=["unknown number", "unknown title", "ambiguous title", "itself", "cycle"],
)
async def test_a_dependency_that_cannot_stand_is_invalid_argument_naming_the_tasks(tasks, message):
    with pytest.raises(InvalidArgument, match="prd_id") as caught:
        await generate(f"# T\n\n{tasks}")
    assert message in str(caught.value)


async def test_a_due_date_that_is_not_a_date_is_invalid_argument_with_the_line():
    with pytest.raises(InvalidArgument) as caught:
        await generate("# T\n\n## Tasks\n\n- Ship Due: 2025-02-30\n")
    assert "task #1 'Ship' (line 5) is due '2025-02-30'" in str(caught.value)


async def test_a_very_long_item_gets_a_short_title_and_keeps_its_text_in_the_reasoning():
    long_item = "Build " + "the thing " * 50
    plan = await generate(f"# T\n\n- [ ] {long_item}\n")
    (planned,) = plan.tasks
    assert len(planned.title) <= 200
    assert planned.title.endswith("\u2026")
    assert long_item.strip() in planned.reasoning


async def test_a_1_mib_prd_is_planned_in_linear_time_without_stopping_the_event_loop():
    unit = "- [ ] Deliver part of the feature @ann Due: 2025-06-01 (after #1)\n"
    text = "# Big\n\n## Tasks\n\n- [ ] First part\n" + unit * (1024 * 1024 // len(unit) - 1)
    ticks = 0
    stop = asyncio.Event()

    async def ticker():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    ticking = asyncio.create_task(ticker())
    started = time.process_time()
    plan = await planner.generate_tasks(await asyncio.to_thread(parse_prd, text))
    elapsed = time.process_time() - started
    stop.set()
    await ticking
    assert len(plan.tasks) > 10_000
    assert ticks > 1, "the event loop stood still while planning"
    assert elapsed < 5  # generous: the target is < 1 s on a quiet machine


async def test_an_expired_deadline_stops_before_planning():
    with pytest.raises(DeadlineExceeded):
        await planner.generate_tasks(parse_prd("# T\n\n- [ ] a\n"), deadline=Deadline.after(-1))


# --- orchestration steps ---------------------------------------------------------


@pytest.fixture
async def example():
    prd = parse_prd(EXAMPLE.read_text())
    tasks = stored((await planner.generate_tasks(prd)).tasks)
    return prd, tasks


def context_for(example, index: int) -> TaskContext:
    prd, tasks = example
    return TaskContext(task=tasks[index], prd=prd, related=tasks)


async def test_an_enhancement_lists_acceptance_criteria_from_the_task_and_its_prd(example):
    enhancement = await planner.enhance(context_for(example, 1))
    assert (enhancement.enhancement_type, enhancement.planner, enhancement.model) == (
        "acceptance_criteria",
        "offline",
        "offline",
    )
    content = enhancement.content
    assert "- [ ] store the last sequence after each posted message" in content
    assert (
        "- [ ] Respects the constraint: The sidecar resumes from its last seen event sequence "
        "after a restart" in content
    )
    assert "- [ ] Finished by 2025-03-07" in content
    assert "Out of scope:\n- Email notifications" in content


async def test_an_enhancement_names_what_to_finish_first_and_asks_what_is_missing(example):
    content = (await planner.enhance(context_for(example, 3))).content
    assert "Finish first:\n- Post messages to the chat webhook" in content
    assert "Who owns this task? It has no assignee." in content
    assert "When is it due? It has no due date." in content


async def test_a_multiple_choice_test_offers_the_answer_among_other_tasks_titles(example):
    test = await planner.comprehension_test(context_for(example, 2), None, "multiple_choice")
    assert (
        test.question
        == "Which task must be finished before 'Post messages to the chat webhook' can start?"
    )
    assert test.correct_answer == "Design the notification message format"
    assert test.correct_answer in test.options
    assert len(set(test.options)) == len(test.options) == 4
    assert "Post messages to the chat webhook" not in test.options


async def test_a_short_answer_test_asks_for_the_nearest_constraint_without_options(example):
    test = await planner.comprehension_test(context_for(example, 1), None, "short_answer")
    assert test.options == ()
    assert test.correct_answer == (
        "The sidecar resumes from its last seen event sequence after a restart"
    )
    assert (test.planner, test.model) == ("offline", "offline")


async def test_the_same_task_always_gets_the_same_test(example):
    first = await planner.comprehension_test(context_for(example, 2), None, "multiple_choice")
    again = await planner.comprehension_test(context_for(example, 2), None, "multiple_choice")
    assert first == again


async def test_a_task_alone_still_gets_a_real_multiple_choice_test():
    test = await planner.comprehension_test(TaskContext(task=task()), None, "multiple_choice")
    assert test.correct_answer in test.options
    assert len(test.options) >= 2


@pytest.mark.parametrize("test_type", ["essay", "MULTIPLE_CHOICE"])
async def test_an_unknown_test_type_is_invalid_argument_listing_both_kinds(test_type):
    with pytest.raises(InvalidArgument, match="short_answer, multiple_choice") as caught:
        await planner.comprehension_test(TaskContext(task=task()), None, test_type)
    assert caught.value.field == "test_type"


async def test_an_empty_test_type_means_short_answer():
    test = await planner.comprehension_test(TaskContext(task=task()), None, "")
    assert test.test_type == "short_answer"


async def test_a_task_without_steps_decomposes_into_the_standard_phases(example):
    context = context_for(example, 4)
    decomposition = await planner.decompose(context)
    titles = [s.title for s in decomposition.subtasks]
    assert titles == [
        "Survey how to refactor the sidecar entry point to run the notifier beside the\u2026",
        "Plan how to refactor the sidecar entry point to run the notifier beside the\u2026",
        "Carry out: refactor the sidecar entry point to run the notifier beside the\u2026",
        "Verify: refactor the sidecar entry point to run the notifier beside the printer",
    ]
    parent = route(context.task).score
    assert all(s.complexity < parent for s in decomposition.subtasks)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (["a", "b", "c"], ["a", "b", "c"]),
        (["a", "b", "c", "d", "e"], ["a", "b", "c", "d", "e"]),
        (list("abcdefg"), ["a (+1 more)", "c (+1 more)", "e", "f", "g"]),
        (["a", "b"], ["a", "b", "Verify: rewrite the importer"]),
        (["a"], ["Plan how to rewrite the importer", "a", "Verify: rewrite the importer"]),
    ],
    ids=["three", "five", "seven grouped", "two padded", "one padded"],
)
async def test_a_task_with_steps_in_the_prd_decomposes_along_them(steps, expected):
    nested = "".join(f"  - {step}\n" for step in steps)
    prd = parse_prd(f"# T\n\n## Tasks\n\n- Rewrite the importer\n{nested}")
    context = TaskContext(task=task("Rewrite the importer"), prd=prd)
    decomposition = await planner.decompose(context)
    assert [s.title for s in decomposition.subtasks] == expected


async def test_subtasks_inherit_the_assignee_due_date_and_files():
    parent = task(
        "Redesign the API", assignee="ann", due_date="2025-05-01", context_files=("a.py",)
    )
    decomposition = await planner.decompose(TaskContext(task=parent))
    assert {(s.assignee, s.due_date, s.context_files) for s in decomposition.subtasks} == {
        ("ann", "2025-05-01", ("a.py",))
    }


async def test_orchestrating_a_simple_task_enhances_then_tests(example):
    done = await orchestrate(planner, context_for(example, 0), test_type="multiple_choice")
    assert done.routing.route == "enhance"
    assert done.enhancement is not None and done.test is not None
    assert done.test.test_type == "multiple_choice"
    assert done.decomposition is None
    assert (done.planner, done.model) == ("offline", "offline")


async def test_orchestrating_a_complex_task_decomposes_it(example):
    done = await orchestrate(planner, context_for(example, 4))
    assert done.routing.route == "decompose"
    assert done.decomposition is not None
    assert 3 <= len(done.decomposition.subtasks) <= 5
    assert (done.enhancement, done.test) == (None, None)


async def test_a_stored_prd_with_only_its_parsed_sections_can_still_be_planned():
    full = parse_prd("# Shop\n\n## Objectives\n\n- Take payments\n")
    legacy = dataclasses.replace(full, sections=(), tasks=(), paths=(), summary="")
    plan = await planner.generate_tasks(legacy)
    assert [t.title for t in plan.tasks] == ["Take payments"]


# --- output quality (issue 22): each on a fixed PRD ---------------------------------

QUALITY_PRD = """\
# Billing Revamp

## Constraints

- Card numbers never reach the logs
- Invoices render within 2 seconds
- The public API stays backwards compatible

## Tasks

- [ ] Refactor the `invoice` renderer into **small** modules in `billing/render.py` @Dana
  - list the templates in use
  - move each template to its own module
- [ ] Mask card numbers in the [payment logs](docs/logging.md) @dana Due: 2025-05-02
- [ ] Write the _release notes_ **Owner:** DANA
- [ ] Migrate the billing database to the new schema, keeping the public API backwards \
compatible and every invoice renderable while it runs
"""


def subtask_of(parent: Task, part) -> Task:
    return task(
        part.title,
        id="sub",
        parent_task_id=parent.id,
        assignee=part.assignee,
        due_date=part.due_date,
        reasoning=part.reasoning,
    )


async def test_titles_are_plain_text_with_inline_code_emphasis_and_links_reduced_to_their_text():
    plan = await generate(QUALITY_PRD)
    assert [t.title for t in plan.tasks][:3] == [
        "Refactor the invoice renderer into small modules in billing/render.py",
        "Mask card numbers in the payment logs",
        "Write the release notes",
    ]
    objectives = await generate("# P\n\n## Objectives\n\n- Ship `rig` as a **single** binary\n")
    assert [t.title for t in objectives.tasks] == ["Ship rig as a single binary"]


async def test_assignees_take_the_prds_first_spelling_of_a_name_whatever_its_case():
    plan = await generate(QUALITY_PRD + "- [ ] Review the ledger @bob\n")
    assert [t.assignee for t in plan.tasks] == ["Dana", "Dana", "Dana", None, "bob"]


async def test_an_enhancement_cites_only_the_constraints_and_files_sharing_words_with_the_task():
    prd = parse_prd(QUALITY_PRD)
    tasks = stored((await planner.generate_tasks(prd)).tasks)
    masking = (await planner.enhance(TaskContext(task=tasks[1], prd=prd, related=tasks))).content
    assert "Respects the constraint: Card numbers never reach the logs" in masking
    assert "Invoices render" not in masking
    assert "backwards compatible" not in masking
    assert "Changes to docs/logging.md are reviewed" in masking
    assert "billing/render.py" not in masking
    notes = (await planner.enhance(TaskContext(task=tasks[2], prd=prd, related=tasks))).content
    assert "Respects the constraint" not in notes
    assert "Changes to" not in notes
    example = parse_prd(EXAMPLE.read_text())
    first = stored((await planner.generate_tasks(example)).tasks)
    design = (await planner.enhance(TaskContext(task=first[0], prd=example))).content
    assert "Respects the constraint" not in design
    assert "proto/rigger/v1/rigger.proto" not in design


async def test_decomposition_keeps_the_tasks_verb_and_its_subtasks_never_decompose_again():
    prd = parse_prd(QUALITY_PRD)
    tasks = stored((await planner.generate_tasks(prd)).tasks)
    for parent in (tasks[0], tasks[3], task("Rewrite the importer", reasoning="r" * 300)):
        assert route(parent).route == "decompose"
        parts = (await planner.decompose(TaskContext(task=parent, prd=prd))).subtasks
        for part in parts:
            assert route(subtask_of(parent, part)).route == "enhance", part.title
            assert route(subtask_of(parent, part)).score < 7
    example = parse_prd(EXAMPLE.read_text())
    refactor = stored((await planner.generate_tasks(example)).tasks)[4]
    parts = (await planner.decompose(TaskContext(task=refactor, prd=example))).subtasks
    assert parts[0].title.startswith("Survey how to refactor the sidecar entry point")
    assert all("refactor the sidecar entry point" in part.title for part in parts)


async def test_multiple_choice_options_differ_from_the_answer_by_meaning_and_from_each_other():
    from rigger_server.planner.offline import near_duplicates

    for markdown in (EXAMPLE.read_text(), QUALITY_PRD):
        prd = parse_prd(markdown)
        tasks = stored((await planner.generate_tasks(prd)).tasks)
        for index in range(len(tasks)):
            context = TaskContext(task=tasks[index], prd=prd, related=tasks)
            test = await planner.comprehension_test(context, None, "multiple_choice")
            wrong = [o for o in test.options if o != test.correct_answer]
            assert wrong, test
            for option in wrong:
                assert not near_duplicates(option, test.correct_answer), (option, test)
            for a, b in itertools.combinations(test.options, 2):
                assert not near_duplicates(a, b), (a, b)
    example = parse_prd(EXAMPLE.read_text())
    resume = stored((await planner.generate_tasks(example)).tasks)
    test = await planner.comprehension_test(
        TaskContext(task=resume[1], prd=example, related=resume), None, "multiple_choice"
    )
    assert test.correct_answer == (
        "The sidecar resumes from its last seen event sequence after a restart"
    )
    assert "Never miss or repeat a notification across sidecar restarts" not in test.options
