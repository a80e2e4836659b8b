"""Every planner step is reported with its planner, its name and a fixed outcome."""

from __future__ import annotations

import pytest
from rigger_server.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    PlannerOutputInvalid,
    ResourceExhausted,
    Unavailable,
)
from rigger_server.planner import OfflinePlanner
from rigger_server.planner.observed import observed, outcome_of
from rigger_server.prd import parse_prd

PRD = "# Shop\n\n## Objectives\n\n- Take payments\n"


class Failing:
    """A planner whose every step raises `error`."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def enhance(self, *args: object, **kwargs: object) -> None:
        raise self.error

    async def aclose(self) -> None:
        pass


async def test_a_step_that_succeeds_is_reported_ok_under_its_planner_and_step():
    heard: list[tuple[str, str, str]] = []
    planner = observed(OfflinePlanner(), "offline", lambda *seen: heard.append(seen))
    await planner.generate_tasks(parse_prd(PRD))
    await planner.aclose()
    assert heard == [("offline", "generate_tasks", "ok")]


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (PlannerOutputInvalid("m", 3, "bad"), "invalid_output"),
        (DeadlineExceeded("late"), "deadline_exceeded"),
        (Unavailable("down"), "unavailable"),
        (ResourceExhausted("full"), "busy"),
        (FailedPrecondition("not pulled"), "failed_precondition"),
        (RuntimeError("a bug"), "error"),
    ],
)
async def test_a_step_that_fails_is_reported_with_a_fixed_outcome_and_still_raises(error, outcome):
    heard: list[tuple[str, str, str]] = []
    planner = observed(Failing(error), "ollama", lambda *seen: heard.append(seen))  # type: ignore[arg-type]
    with pytest.raises(type(error)):
        await planner.enhance(None)
    assert heard == [("ollama", "enhance", outcome)]
    assert outcome_of(error) == outcome
