"""How long every string, and how many entries every list, of a planner's result may be.

A plan becomes tasks and their events, an orchestration subtasks, an
enhancement and a test. Each string is held to the same `Limits` as the
requests (request_limits.py): titles to `max_title_chars`, every other string
to `max_field_chars`. So no planner, neither a model nor the offline rules
reading a 1 MiB PRD, stores what no client could have sent, and with the
default limits no event about a planned task comes near MAX_EVENT_BYTES.

Per field, clip or refuse:
- Prose is clipped at its limit, marked with "…": a task's or subtask's
  reasoning, an enhancement's content, a test's question and a short
  answer's model answer. A prefix still says what the text said, and the
  offline planner's prose quotes PRD text of any length.
- Titles are clipped too: a title names the work for people, and the offline
  planner keeps a long title's whole text in the reasoning.
- A multiple-choice test's options and answer are clipped alike, so the
  answer stays one of the options; refused if clipping makes two options
  the same.
- Values that mean something exactly are refused: an assignee (cut, it names
  someone else), a due date, a context file's path (cut, another file), the
  enhancement and test types, the planner and model names, and lists longer
  than their bound (context files, dependencies, options): dropping entries
  would change what the task says.

Refusals raise `OverLimit`, whose message names the field by its path
(`tasks.3.assignee`), as the answer models' errors do: the Ollama planner
sends it back to the model, and planning.py turns it into the request's
error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from rigger_server.errors import quoted
from rigger_server.limits import (
    MAX_PLANNED_CONTEXT_FILES,
    MAX_PLANNED_DEPENDENCIES,
    MAX_TEST_OPTIONS,
    Limits,
)
from rigger_server.planner.orchestration import Orchestration
from rigger_server.planner.plans import (
    ComprehensionTest,
    Decomposition,
    Enhancement,
    PlannedTask,
    Subtask,
    TaskPlan,
)

ELLIPSIS = "\u2026"
_FIELD_FLAG = "rig grpc --max-field-length"


class OverLimit(ValueError):
    """A planner's result holds a value that cannot be stored; the message says which."""


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, the cut marked with "…"."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + ELLIPSIS


def _exact(value: str | None, path: str, limit: int) -> None:
    if value is not None and len(value) > limit:
        raise OverLimit(
            f"{path}: is {len(value)} characters long; the limit is {limit} ({_FIELD_FLAG})"
        )


def _entries(values: Sequence[object], path: str, limit: int) -> None:
    if len(values) > limit:
        raise OverLimit(f"{path}: has {len(values)} entries; the limit is {limit}")


def _paths(values: Sequence[str], path: str, limits: Limits) -> None:
    _entries(values, path, MAX_PLANNED_CONTEXT_FILES)
    for index, value in enumerate(values):
        _exact(value, f"{path}.{index}", limits.max_field_chars)


def _made_by(planner: str, model: str, limits: Limits) -> None:
    _exact(planner, "planner", limits.max_field_chars)
    _exact(model, "model", limits.max_field_chars)


def _task(task: PlannedTask, path: str, limits: Limits) -> PlannedTask:
    where = f"{path} ({quoted(task.title)})"
    _exact(task.assignee, f"{where}.assignee", limits.max_field_chars)
    _exact(task.due_date, f"{where}.due_date", limits.max_field_chars)
    _paths(task.context_files, f"{where}.context_files", limits)
    _entries(task.dependencies, f"{where}.depends_on", MAX_PLANNED_DEPENDENCIES)
    title = clip(task.title, limits.max_title_chars)
    reasoning = clip(task.reasoning, limits.max_field_chars)
    if title is task.title and reasoning is task.reasoning:
        return task
    return dataclasses.replace(task, title=title, reasoning=reasoning)


def bounded_plan(plan: TaskPlan, limits: Limits) -> TaskPlan:
    """`plan` with its prose and titles clipped; OverLimit for any value that cannot be."""
    _made_by(plan.planner, plan.model, limits)
    tasks = tuple(_task(task, f"tasks.{i}", limits) for i, task in enumerate(plan.tasks))
    if all(new is old for new, old in zip(tasks, plan.tasks, strict=True)):
        return plan
    return dataclasses.replace(plan, tasks=tasks)


def _subtask(part: Subtask, path: str, limits: Limits) -> Subtask:
    where = f"{path} ({quoted(part.title)})"
    _exact(part.assignee, f"{where}.assignee", limits.max_field_chars)
    _exact(part.due_date, f"{where}.due_date", limits.max_field_chars)
    _paths(part.context_files, f"{where}.context_files", limits)
    return dataclasses.replace(
        part,
        title=clip(part.title, limits.max_title_chars),
        reasoning=clip(part.reasoning, limits.max_field_chars),
    )


def bounded_decomposition(decomposition: Decomposition, limits: Limits) -> Decomposition:
    """`decomposition` with its prose and titles clipped; OverLimit as for a plan."""
    _made_by(decomposition.planner, decomposition.model, limits)
    subtasks = tuple(
        _subtask(part, f"subtasks.{i}", limits) for i, part in enumerate(decomposition.subtasks)
    )
    return dataclasses.replace(decomposition, subtasks=subtasks)


def bounded_enhancement(enhancement: Enhancement, limits: Limits) -> Enhancement:
    """`enhancement` with its content clipped; OverLimit for its type or names."""
    _made_by(enhancement.planner, enhancement.model, limits)
    _exact(enhancement.enhancement_type, "enhancement_type", limits.max_field_chars)
    return dataclasses.replace(
        enhancement, content=clip(enhancement.content, limits.max_field_chars)
    )


def bounded_test(test: ComprehensionTest, limits: Limits) -> ComprehensionTest:
    """`test` with its question, options and answer clipped; OverLimit if that merges options."""
    _made_by(test.planner, test.model, limits)
    _exact(test.test_type, "test_type", limits.max_field_chars)
    _entries(test.options, "options", MAX_TEST_OPTIONS)
    limit = limits.max_field_chars
    options = tuple(clip(option, limit) for option in test.options)
    if len(set(options)) != len(set(test.options)):
        raise OverLimit(
            f"options: two options are the same in their first {limit} characters, the most "
            f"an option may have ({_FIELD_FLAG}); make them differ sooner"
        )
    return dataclasses.replace(
        test,
        question=clip(test.question, limit),
        options=options,
        correct_answer=clip(test.correct_answer, limit),
    )


def bounded_orchestration(made: Orchestration, limits: Limits) -> Orchestration:
    """Every step of `made` bounded as above."""
    enhancement, test, decomposition = made.enhancement, made.test, made.decomposition
    return dataclasses.replace(
        made,
        enhancement=None if enhancement is None else bounded_enhancement(enhancement, limits),
        test=None if test is None else bounded_test(test, limits),
        decomposition=(
            None if decomposition is None else bounded_decomposition(decomposition, limits)
        ),
    )
