"""A planner whose every step is reported: which planner, which step, and how it ended.

The server counts them (metrics.planner_step); the planner does not know.
Every coroutine method of the planner is a step, whatever steps the
Planner protocol has; the outcome is "ok" or a fixed name for the error.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, cast

from rigger_server.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    PlannerOutputInvalid,
    ResourceExhausted,
    Unavailable,
)
from rigger_server.planner.plans import Planner

# Told (planner name, step, outcome) once for each step.
StepObserver = Callable[[str, str, str], None]

# Most specific first: an outcome names what the caller can do about it.
OUTCOMES: tuple[tuple[type[BaseException], str], ...] = (
    (PlannerOutputInvalid, "invalid_output"),
    (DeadlineExceeded, "deadline_exceeded"),
    (Unavailable, "unavailable"),
    (ResourceExhausted, "busy"),
    (FailedPrecondition, "failed_precondition"),
    (asyncio.CancelledError, "cancelled"),
)


def outcome_of(exc: BaseException) -> str:
    """The outcome name for a step that raised `exc`."""
    for kind, name in OUTCOMES:
        if isinstance(exc, kind):
            return name
    return "error"


class _Observed:
    def __init__(self, planner: Planner, name: str, observe: StepObserver) -> None:
        self._planner = planner
        self._name = name
        self._observe = observe

    def __getattr__(self, attribute: str) -> Any:
        method = getattr(self._planner, attribute)
        if attribute == "aclose" or not asyncio.iscoroutinefunction(method):
            return method

        @functools.wraps(method)
        async def step(*args: Any, **kwargs: Any) -> Any:
            try:
                result = await method(*args, **kwargs)
            except BaseException as exc:
                self._observe(self._name, attribute, outcome_of(exc))
                raise
            self._observe(self._name, attribute, "ok")
            return result

        setattr(self, attribute, step)  # looked up once
        return step


def observed(planner: Planner, name: str, observe: StepObserver) -> Planner:
    """`planner`, each of its steps reported to `observe` under `name`."""
    return cast(Planner, _Observed(planner, name, observe))
