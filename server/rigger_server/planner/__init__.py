"""Planning: PRDs into tasks, and the model steps of an orchestration.

No gRPC and no storage here: the service translates requests into these
calls, and planning.Planning commits what they return. `build_planner(config)` gives
the server's planner; docs/planning.md gives the rules each follows.
"""

from rigger_server.planner.complexity import route
from rigger_server.planner.config import (
    DEFAULT_OLLAMA_URL,
    PLANNERS,
    PlannerConfig,
    add_planner_flags,
    config_from_args,
    ollama_url,
)
from rigger_server.planner.offline import OfflinePlanner
from rigger_server.planner.orchestration import Orchestration, orchestrate
from rigger_server.planner.plans import (
    OFFLINE,
    TEST_TYPES,
    ComprehensionTest,
    Deadline,
    Decomposition,
    Enhancement,
    PlannedTask,
    Planner,
    RoutingDecision,
    Subtask,
    TaskContext,
    TaskPlan,
    check_test_type,
)
from rigger_server.planner.selection import ModelSelector, build_planner


def __getattr__(name: str) -> object:
    # OllamaPlanner loads on first use (see build_planner): most servers never need it.
    if name == "OllamaPlanner":
        from rigger_server.planner.ollama import OllamaPlanner

        return OllamaPlanner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_OLLAMA_URL",
    "OFFLINE",
    "PLANNERS",
    "TEST_TYPES",
    "ComprehensionTest",
    "Deadline",
    "Decomposition",
    "Enhancement",
    "ModelSelector",
    "OfflinePlanner",
    "OllamaPlanner",
    "Orchestration",
    "PlannedTask",
    "Planner",
    "PlannerConfig",
    "RoutingDecision",
    "Subtask",
    "TaskContext",
    "TaskPlan",
    "add_planner_flags",
    "build_planner",
    "check_test_type",
    "config_from_args",
    "ollama_url",
    "orchestrate",
    "route",
]
