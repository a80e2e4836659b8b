"""Which planner a server runs: `--planner offline|ollama`, `--ollama-url`.

The Ollama address comes from `--ollama-url`, else the OLLAMA_HOST
environment variable, else http://localhost:11434. Either may be written as
Ollama itself accepts it: `host`, `host:port`, `:port`, or a URL with
`http://` or `https://` (a missing port is 11434 without a scheme, else the
scheme's own).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING

from rigger_server.limits import Limits
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

PLANNERS = ("offline", "ollama")
DEFAULT_MODEL = "llama3.1"
DEFAULT_TIMEOUT = 300.0
DEFAULT_RETRIES = 2
DEFAULT_OLLAMA_URL = "http://localhost:11434"
OLLAMA_PORT = 11434


def ollama_url(value: str) -> str:
    """An Ollama address as written by a user, as a base URL (no trailing slash)."""
    text = value.strip().strip("\"'")
    scheme, separator, rest = text.partition("://")
    if not separator:
        scheme, rest, port = "http", text, OLLAMA_PORT
    elif scheme in ("http", "https"):
        port = 80 if scheme == "http" else 443
    else:
        raise ValueError(f"Ollama URL {value!r}: the scheme must be http or https")
    try:
        split = urllib.parse.urlsplit(f"{scheme}://{rest}")
        port = split.port or port
    except ValueError as exc:
        raise ValueError(f"Ollama URL {value!r}: {exc}") from None
    host = split.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}{split.path.rstrip('/')}"


@dataclasses.dataclass(frozen=True, slots=True)
class PlannerConfig:
    """The planner settings of a server."""

    planner: str = "offline"
    ollama_url: str = DEFAULT_OLLAMA_URL
    # The model used when a request names none.
    default_model: str = DEFAULT_MODEL
    # Longest a model may take for one step when the caller sets no deadline.
    timeout_seconds: float = DEFAULT_TIMEOUT
    # Invalid answers sent back to the model before giving up.
    retries: int = DEFAULT_RETRIES
    # Assignees a model may choose from; empty: any name the PRD gives.
    personas: tuple[str, ...] = ()

    @classmethod
    def from_flags(
        cls,
        planner: str = "offline",
        ollama_url_flag: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> PlannerConfig:
        """Settings from `--planner`, `--ollama-url` and the environment."""
        if planner not in PLANNERS:
            raise ValueError(f"planner {planner!r} is not one of {', '.join(PLANNERS)}")
        environ = os.environ if environ is None else environ
        written = ollama_url_flag or environ.get("OLLAMA_HOST", "").strip()
        url = ollama_url(written) if written else DEFAULT_OLLAMA_URL
        return cls(planner=planner, ollama_url=url)


def add_planner_flags(parser: argparse.ArgumentParser) -> None:
    """Add `--planner` and `--ollama-url` to `rig grpc`'s parser."""
    group = parser.add_argument_group("planner")
    group.add_argument(
        "--planner",
        choices=PLANNERS,
        default="offline",
        help="who plans GenerateTasksFromPRD and OrchestrateTask: the built-in offline "
        "planner, or models served by Ollama (default: offline)",
    )
    group.add_argument(
        "--ollama-url",
        type=_url_flag,
        default=None,
        metavar="URL",
        help=f"where Ollama listens (default: $OLLAMA_HOST, else {DEFAULT_OLLAMA_URL})",
    )


def config_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> PlannerConfig:
    """The planner settings from parsed `rig grpc` arguments."""
    return PlannerConfig.from_flags(args.planner, args.ollama_url, environ)


def _url_flag(text: str) -> str:
    try:
        return ollama_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
