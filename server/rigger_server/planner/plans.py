"""What a planner takes and gives: plain frozen dataclasses and the `Planner` protocol.

Every result names the planner and the model that actually produced it
(`planner="offline", model="offline"`, or `planner="ollama", model="llama3.1"`),
so that nobody is told a model ran when it did not.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Literal, Protocol

from rigger_server.domain import Task
from rigger_server.errors import InvalidArgument
from rigger_server.prd import ParsedPrd

# The model name that always means the built-in planner.
OFFLINE = "offline"
TEST_TYPES = ("short_answer", "multiple_choice")
Route = Literal["enhance", "decompose"]


@dataclasses.dataclass(frozen=True, slots=True)
class Deadline:
    """A point on the monotonic clock by which the work must be done."""

    at: float

    @classmethod
    def after(cls, seconds: float | None) -> Deadline | None:
        """The deadline `seconds` from now (e.g. gRPC's `time_remaining()`); None: none."""
        return None if seconds is None else cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        """Seconds left; 0 or less once passed."""
        return self.at - time.monotonic()


@dataclasses.dataclass(frozen=True, slots=True)
class PlannedTask:
    """A task a planner proposes; nothing is stored until the whole plan is."""

    title: str
    # What the task is about and why, from the PRD: becomes Task.reasoning.
    reasoning: str
    complexity: int
    assignee: str | None = None
    due_date: str | None = None
    context_files: tuple[str, ...] = ()
    # Indexes into the plan's `tasks` of the tasks this one waits for.
    dependencies: tuple[int, ...] = ()
    # Checked off in the PRD already (`- [x]`).
    done: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class TaskPlan:
    """The tasks a PRD asks for, in order, with their dependencies checked."""

    tasks: tuple[PlannedTask, ...]
    planner: str
    model: str


@dataclasses.dataclass(frozen=True, slots=True)
class TaskContext:
    """A task to orchestrate and what is known around it."""

    task: Task
    # The PRD the task came from, when it is known (Task.source_prd_id).
    prd: ParsedPrd | None = None
    # Other tasks of the same PRD or parent: its dependencies among them.
    related: tuple[Task, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class RoutingDecision:
    """Where the complexity heuristic sends a task; no model takes part."""

    route: Route
    score: int
    # How the score was reached, e.g. ("base 3", "+2 title mentions 'migrate'").
    reasons: tuple[str, ...]
    planner: str = OFFLINE
    model: str = OFFLINE


@dataclasses.dataclass(frozen=True, slots=True)
class Enhancement:
    """What a task needs said before work starts (e.g. acceptance criteria)."""

    enhancement_type: str
    content: str
    planner: str
    model: str


@dataclasses.dataclass(frozen=True, slots=True)
class ComprehensionTest:
    """A question that checks whoever takes the task understood it."""

    test_type: str
    question: str
    # Empty for short_answer; for multiple_choice the answer is one of them.
    options: tuple[str, ...]
    correct_answer: str
    planner: str
    model: str


@dataclasses.dataclass(frozen=True, slots=True)
class Subtask:
    """One part of a decomposed task: simpler than the task it comes from."""

    title: str
    reasoning: str
    complexity: int
    assignee: str | None = None
    due_date: str | None = None
    context_files: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Decomposition:
    """A task split into 3 to 5 subtasks, in the order to do them."""

    subtasks: tuple[Subtask, ...]
    planner: str
    model: str


class Planner(Protocol):
    """Turns PRDs into tasks and runs the model steps of an orchestration.

    `model` is the request's model name ("" for the server's default;
    `offline` always means the built-in planner). A planner never writes
    anything: the caller validates nothing further and commits the result
    whole, or not at all. Errors are domain errors (rigger_server.errors).
    """

    async def generate_tasks(
        self, prd: ParsedPrd, *, model: str = "", deadline: Deadline | None = None
    ) -> TaskPlan:
        """The tasks `prd` asks for."""
        ...

    async def enhance(
        self, context: TaskContext, *, model: str = "", deadline: Deadline | None = None
    ) -> Enhancement:
        """What the task needs said before work starts."""
        ...

    async def comprehension_test(
        self,
        context: TaskContext,
        enhancement: Enhancement | None,
        test_type: str,
        *,
        model: str = "",
        deadline: Deadline | None = None,
    ) -> ComprehensionTest:
        """A question of `test_type` (see `check_test_type`) about the task."""
        ...

    async def decompose(
        self, context: TaskContext, *, model: str = "", deadline: Deadline | None = None
    ) -> Decomposition:
        """The task split into 3 to 5 simpler subtasks."""
        ...

    async def aclose(self) -> None:
        """Release connections; the planner is not used afterwards."""
        ...


def check_test_type(value: str) -> str:
    """The test type a request asks for; empty means short_answer."""
    value = value.strip()
    if not value:
        return TEST_TYPES[0]
    if value not in TEST_TYPES:
        raise InvalidArgument("test_type", f"{value!r} is not one of {', '.join(TEST_TYPES)}")
    return value
