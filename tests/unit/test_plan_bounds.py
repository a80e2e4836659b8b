"""A planner's result held to the request limits: prose and titles clipped, the rest refused."""

from __future__ import annotations

import pytest
from rigger_server.limits import Limits
from rigger_server.planner import ComprehensionTest, Enhancement, PlannedTask, TaskPlan
from rigger_server.planner.bounds import (
    OverLimit,
    bounded_enhancement,
    bounded_plan,
    bounded_test,
)

LIMITS = Limits(max_title_chars=50, max_field_chars=100)


def plan_of(**fields: object) -> TaskPlan:
    task = PlannedTask(**{"title": "Ship it", "reasoning": "", "complexity": 3, **fields})
    return TaskPlan(tasks=(task,), planner="offline", model="offline")


def test_a_plan_within_the_limits_is_returned_as_it_is():
    plan = plan_of(assignee="ann", context_files=("a.py",), dependencies=())
    assert bounded_plan(plan, LIMITS) is plan


def test_a_long_title_and_reasoning_are_clipped_at_their_limits_with_a_mark():
    (task,) = bounded_plan(plan_of(title="t" * 80, reasoning="r" * 300), LIMITS).tasks
    assert (len(task.title), len(task.reasoning)) == (50, 100)
    assert task.title.endswith("\u2026") and task.reasoning.endswith("\u2026")


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"assignee": "a" * 101}, "tasks.0 ('Ship it').assignee"),
        ({"due_date": "d" * 101}, "tasks.0 ('Ship it').due_date"),
        ({"context_files": ("ok.py", "p" * 101)}, "tasks.0 ('Ship it').context_files.1"),
        ({"context_files": tuple(f"{i}.py" for i in range(21))}, "context_files: has 21"),
        ({"dependencies": tuple(range(1001))}, "depends_on: has 1001"),
    ],
    ids=["assignee", "due date", "a path", "too many paths", "too many dependencies"],
)
def test_a_value_that_means_something_exactly_is_refused_not_cut(fields, path):
    with pytest.raises(OverLimit, match="the limit is") as caught:
        bounded_plan(plan_of(**fields), LIMITS)
    assert path in str(caught.value)


def test_a_model_name_over_the_field_limit_is_refused():
    plan = TaskPlan(tasks=(), planner="ollama", model="m" * 101)
    with pytest.raises(OverLimit, match="model: is 101 characters"):
        bounded_plan(plan, LIMITS)


def test_an_enhancement_is_clipped_to_the_field_limit():
    enhancement = Enhancement("acceptance_criteria", "c" * 500, "offline", "offline")
    assert len(bounded_enhancement(enhancement, LIMITS).content) == 100


def test_options_and_answer_are_clipped_alike_so_the_answer_stays_an_option():
    long = "o" * 300
    test = ComprehensionTest("multiple_choice", "Q?", (long, "short"), long, "offline", "offline")
    bounded = bounded_test(test, LIMITS)
    assert bounded.correct_answer in bounded.options
    assert len(bounded.correct_answer) == 100


def test_options_that_clipping_would_merge_are_refused():
    a, b = "x" * 200 + "a", "x" * 200 + "b"
    test = ComprehensionTest("multiple_choice", "Q?", (a, b), a, "offline", "offline")
    with pytest.raises(OverLimit, match="two options are the same"):
        bounded_test(test, LIMITS)
