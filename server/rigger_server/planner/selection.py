"""The planner a server runs: offline, or Ollama with `offline` as a model name.

`build_planner(config)` makes it from the `--planner` flags (config.py); it
is the only place that imports the Ollama planner, so the planner's
configuration and the Ollama client never import each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rigger_server.limits import Limits
from rigger_server.planner.config import PlannerConfig
from rigger_server.planner.observed import StepObserver, observed
from rigger_server.planner.offline import OfflinePlanner
from rigger_server.planner.plans import (
    OFFLINE,
    ComprehensionTest,
    Deadline,
    Decomposition,
    Enhancement,
    Planner,
    TaskContext,
    TaskPlan,
)
from rigger_server.prd import ParsedPrd

if TYPE_CHECKING:
    from rigger_server.planner.ollama import OllamaPlanner


class ModelSelector:
    """The planner of a server run with `--planner ollama`.

    The request's model picks the Ollama model ("" picks the default); the
    model name `offline` always picks the built-in planner.
    """

    def __init__(
        self, models: Planner, offline: Planner, ollama: OllamaPlanner | None = None
    ) -> None:
        self.models = models
        self.offline = offline
        # The Ollama planner itself, for asking whether Ollama is ready (readiness.py).
        self.ollama = ollama

    def pick(self, model: str) -> Planner:
        """The planner that serves `model`."""
        return self.offline if model.strip().lower() == OFFLINE else self.models

    async def generate_tasks(
        self, prd: ParsedPrd, *, model: str = "", deadline: Deadline | None = None
    ) -> TaskPlan:
        """See Planner."""
        return await self.pick(model).generate_tasks(prd, model=model, deadline=deadline)

    async def enhance(
        self, context: TaskContext, *, model: str = "", deadline: Deadline | None = None
    ) -> Enhancement:
        """See Planner."""
        return await self.pick(model).enhance(context, model=model, deadline=deadline)

    async def comprehension_test(
        self,
        context: TaskContext,
        enhancement: Enhancement | None,
        test_type: str,
        *,
        model: str = "",
        deadline: Deadline | None = None,
    ) -> ComprehensionTest:
        """See Planner."""
        return await self.pick(model).comprehension_test(
            context, enhancement, test_type, model=model, deadline=deadline
        )

    async def decompose(
        self, context: TaskContext, *, model: str = "", deadline: Deadline | None = None
    ) -> Decomposition:
        """See Planner."""
        return await self.pick(model).decompose(context, model=model, deadline=deadline)

    async def aclose(self) -> None:
        """Close both planners."""
        await self.models.aclose()
        await self.offline.aclose()


def build_planner(
    config: PlannerConfig, limits: Limits | None = None, observe: StepObserver | None = None
) -> Planner:
    """The planner `config` asks for: offline, or Ollama with `offline` as a model name.

    `limits` bound what a model may answer and how many calls wait on it;
    `observe` hears how every step of each planner ended.
    """

    def seen(planner: Planner, name: str) -> Planner:
        return planner if observe is None else observed(planner, name, observe)

    if config.planner == "offline":
        return seen(OfflinePlanner(), OFFLINE)
    # Imported here: httpx and pydantic add a tenth of a second to every
    # server start, and only servers that talk to Ollama need them.
    from rigger_server.planner.ollama import NAME, OllamaPlanner

    models = OllamaPlanner(
        config.ollama_url,
        default_model=config.default_model,
        timeout=config.timeout_seconds,
        retries=config.retries,
        personas=config.personas,
        limits=limits,
    )
    return ModelSelector(seen(models, NAME), seen(OfflinePlanner(), OFFLINE), models)
