"""The planning half of OrchestrateTask: route, then enhance and test, or decompose.

`orchestrate` runs the model steps and returns everything at once; the
caller (TaskBook) holds no write lock meanwhile, and commits the result
with an expected-version check, or nothing.
"""

from __future__ import annotations

import dataclasses

from rigger_server.planner.complexity import route
from rigger_server.planner.plans import (
    ComprehensionTest,
    Deadline,
    Decomposition,
    Enhancement,
    Planner,
    RoutingDecision,
    TaskContext,
    check_test_type,
)


@dataclasses.dataclass(frozen=True, slots=True)
class Orchestration:
    """What an orchestration decided and produced, before anything is stored."""

    routing: RoutingDecision
    # The enhance route: an enhancement, then a comprehension test.
    enhancement: Enhancement | None = None
    test: ComprehensionTest | None = None
    # The decompose route.
    decomposition: Decomposition | None = None

    @property
    def planner(self) -> str:
        """The planner that ran the model steps."""
        made = self.decomposition or self.test or self.enhancement
        return made.planner if made else self.routing.planner

    @property
    def model(self) -> str:
        """The model that ran the model steps (`offline` for the built-in planner)."""
        made = self.decomposition or self.test or self.enhancement
        return made.model if made else self.routing.model


async def orchestrate(
    planner: Planner,
    context: TaskContext,
    *,
    test_type: str = "",
    model: str = "",
    deadline: Deadline | None = None,
) -> Orchestration:
    """Route the task by its complexity, then run that route's steps."""
    test_type = check_test_type(test_type)
    routing = route(context.task)
    if routing.route == "decompose":
        decomposition = await planner.decompose(context, model=model, deadline=deadline)
        return Orchestration(routing=routing, decomposition=decomposition)
    enhancement = await planner.enhance(context, model=model, deadline=deadline)
    test = await planner.comprehension_test(
        context, enhancement, test_type, model=model, deadline=deadline
    )
    return Orchestration(routing=routing, enhancement=enhancement, test=test)
