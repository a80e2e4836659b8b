"""The first release's complexity heuristic, and the routing it drives.

Score: base 3; +1 title longer than 50 characters; +2 title contains
refactor, migrate, redesign, rewrite or architect (case-insensitive, so
"Refactoring" and "Architecture" count), except in a subtask's title: its
parent was scored for that word, and a part of a refactoring that keeps the
verb ("Survey how to refactor …") is no new refactoring; +1 no assignee;
+1 no due date;
+2 reasoning longer than 200 characters; capped at 10. A task scoring 7 or
more is decomposed, any other is enhanced. Both planners use this same
heuristic, so the route never depends on a model.
"""

from __future__ import annotations

import dataclasses
import re

from rigger_server.domain import Task
from rigger_server.planner.plans import RoutingDecision

BASE = 3
CAP = 10
DECOMPOSE_AT = 7
LONG_TITLE = 50
LONG_REASONING = 200
KEYWORDS = ("refactor", "migrate", "redesign", "rewrite", "architect")
_KEYWORD = re.compile("|".join(KEYWORDS), re.I)


@dataclasses.dataclass(frozen=True, slots=True)
class Score:
    """A complexity score and the terms that made it."""

    value: int
    reasons: tuple[str, ...]


def score(
    title: str,
    *,
    assignee: str | None,
    due_date: str | None,
    reasoning: str | None,
    subtask: bool = False,
) -> Score:
    """Score a task's fields by the heuristic (`subtask`: the task has a parent)."""
    value = BASE
    reasons = [f"base {BASE}"]
    if len(title) > LONG_TITLE:
        value += 1
        reasons.append(f"+1 title longer than {LONG_TITLE} characters")
    keyword = None if subtask else next((w for w in KEYWORDS if w in title.lower()), None)
    if keyword:
        value += 2
        reasons.append(f"+2 title mentions {keyword!r}")
    if not (assignee or "").strip():
        value += 1
        reasons.append("+1 no assignee")
    if not (due_date or "").strip():
        value += 1
        reasons.append("+1 no due date")
    if len(reasoning or "") > LONG_REASONING:
        value += 2
        reasons.append(f"+2 reasoning longer than {LONG_REASONING} characters")
    if value > CAP:
        reasons.append(f"capped at {CAP}")
        value = CAP
    return Score(value, tuple(reasons))


def complexity(
    title: str,
    *,
    assignee: str | None,
    due_date: str | None,
    reasoning: str | None,
    subtask: bool = False,
) -> int:
    """The heuristic's score, 3 to 10 (as `score`, without the reasons: plans are large)."""
    value = (
        BASE
        + (len(title) > LONG_TITLE)
        + 2 * (not subtask and _KEYWORD.search(title) is not None)
        + (not (assignee or "").strip())
        + (not (due_date or "").strip())
        + 2 * (len(reasoning or "") > LONG_REASONING)
    )
    return min(value, CAP)


def task_score(task: Task) -> Score:
    """Score a stored task as it is now."""
    return score(
        task.title,
        assignee=task.assignee,
        due_date=task.due_date,
        reasoning=task.reasoning,
        subtask=task.parent_task_id is not None,
    )


def route(task: Task) -> RoutingDecision:
    """Decompose a task scoring 7 or more, enhance any other."""
    scored = task_score(task)
    return RoutingDecision(
        route="decompose" if scored.value >= DECOMPOSE_AT else "enhance",
        score=scored.value,
        reasons=scored.reasons,
    )
