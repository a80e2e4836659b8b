"""Whether the planner can plan now, asked from the server's start on.

The offline planner always can. The Ollama planner can when Ollama answers
and has pulled the default model; the server asks from its start (it never
waits for the answer: Ollama may come later) and keeps asking, so the
planner's health follows Ollama: after PLANNER_PROBE_FIRST_SECONDS while the
answer is no, then twice as long each time up to
PLANNER_PROBE_LONGEST_SECONDS, and every PLANNER_PROBE_LONGEST_SECONDS once
it is yes. Each probe is one GET /api/tags, bounded by
PLANNER_PROBE_SECONDS and by the listing cap (MAX_OLLAMA_LISTING_BYTES).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from rigger_server.errors import DeadlineExceeded, FailedPrecondition, Unavailable
from rigger_server.limits import (
    PLANNER_PROBE_FIRST_SECONDS,
    PLANNER_PROBE_LONGEST_SECONDS,
    PLANNER_PROBE_SECONDS,
)
from rigger_server.planner.plans import Deadline
from rigger_server.planner.selection import ModelSelector

if TYPE_CHECKING:  # loaded only by servers that talk to Ollama (selection.build_planner)
    from rigger_server.planner.ollama import OllamaPlanner

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Readiness:
    """The planner's state: ready, or what is wrong and how to fix it."""

    ready: bool
    problem: str = ""


READY = Readiness(True)


async def probe_ollama(planner: OllamaPlanner, seconds: float = PLANNER_PROBE_SECONDS) -> Readiness:
    """Ask Ollama whether it answers and has the planner's default model."""
    model = planner.default_model
    try:
        names = await planner.models(Deadline(time.monotonic() + seconds))
        planner.check_pulled(model, names)
    except FailedPrecondition as exc:
        # Not pulled (the message names `ollama pull`), or a listing over its cap.
        return Readiness(False, f"{exc}; planning requests will fail until it is there")
    except (Unavailable, DeadlineExceeded) as exc:
        reason = str(exc).split(";")[0]
        return Readiness(
            False,
            f"Ollama does not answer at {planner.url} ({reason}). Start it with "
            "`ollama serve`, or point --ollama-url (or OLLAMA_HOST) at it; planning requests "
            f"fail until it answers and has the model {model}",
        )
    return READY


async def watch(
    probe: Callable[[], Awaitable[Readiness]],
    report: Callable[[Readiness], None],
    *,
    first: float = PLANNER_PROBE_FIRST_SECONDS,
    longest: float = PLANNER_PROBE_LONGEST_SECONDS,
) -> None:
    """Probe until cancelled, telling `report` the first state and every change."""
    last: Readiness | None = None
    delay = first
    while True:
        try:
            state = await probe()
        except Exception as exc:  # a bug in probing must not end the watch
            log.exception("probing the planner failed")
            state = Readiness(False, f"probing the planner failed: {exc}")
        if state != last:
            report(state)
            last = state
        if state.ready:
            await asyncio.sleep(longest)
            delay = first
        else:
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)


def probe_for(planner: object) -> Callable[[], Awaitable[Readiness]] | None:
    """How to ask whether `planner` is ready; None for a planner that always is."""
    if isinstance(planner, ModelSelector) and planner.ollama is not None:
        ollama = planner.ollama
        return lambda: probe_ollama(ollama)
    return None
