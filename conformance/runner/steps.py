"""What every step handler of a run shares: the scope it runs in, and how it fails."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from conformance import cases as c
from conformance.cases.bindings import Bindings


class StepFailed(Exception):
    """A step's expectation was not met; the message lists every problem."""


@dataclasses.dataclass
class Scope:
    """What nested steps inherit: names in scope and whether order is meaningful."""

    bindings: Bindings
    unordered: bool = False


def location(step: c.Step) -> str:
    """Where a step is in its case: `steps[3].branches[1]…`."""
    index = step.where.find("steps[")
    return step.where[index:] if index >= 0 else step.where


def fail(step: c.Step, who: str, problems: list[str]) -> None:
    """StepFailed listing `problems` (none: nothing happens), each naming the step and `who`."""
    if problems:
        prefix = f"{location(step)} [{who}]"
        raise StepFailed("\n".join(f"{prefix}: {p}" for p in problems))


async def all_at_once(work: Iterable[Awaitable[None]]) -> None:
    """Await everything at once; report every step failure together, re-raise anything else."""
    results = await asyncio.gather(*work, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures:
        if not isinstance(failure, StepFailed):
            raise failure
    if failures:
        raise StepFailed("\n".join(str(f) for f in failures))


async def for_each(items: Sequence[Any], work: Callable[[Any], Awaitable[None]]) -> None:
    """Run work for every item at once (fanout instances); report every failure."""
    await all_at_once(work(item) for item in items)
