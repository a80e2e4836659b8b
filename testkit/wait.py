"""Waiting for a condition with a deadline, never a fixed sleep.

Machines running the tests are shared and loaded: a wait ends as soon as its
condition holds, and fails only after a generous deadline, saying what it
waited for and what it saw last.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# Long enough for a loaded two-core machine; a wait that holds ends at once.
WAIT = 30.0
# How often a condition is asked again.
EVERY = 0.02


def wait_until(
    condition: Callable[[], T], what: str, *, within: float = WAIT, every: float = EVERY
) -> T:
    """Ask `condition` until its answer is true, and return that answer.

    Raises TimeoutError after `within` seconds, naming `what` and the last
    answer. An exception from `condition` ends the wait at once (a server
    that died while being waited for).
    """
    deadline = time.monotonic() + within
    while True:
        answer = condition()
        if answer:
            return answer
        if time.monotonic() >= deadline:
            raise TimeoutError(f"waited {within:g} s for {what}; the last answer was {answer!r}")
        time.sleep(every)


async def wait_until_async(
    condition: Callable[[], T | Awaitable[T]],
    what: str,
    *,
    within: float = WAIT,
    every: float = EVERY,
) -> T:
    """`wait_until` on an event loop: `condition` may be a coroutine function."""
    deadline = time.monotonic() + within
    while True:
        answer = condition()
        if inspect.isawaitable(answer):
            answer = await answer
        if answer:
            return answer
        if time.monotonic() >= deadline:
            raise TimeoutError(f"waited {within:g} s for {what}; the last answer was {answer!r}")
        await asyncio.sleep(every)
