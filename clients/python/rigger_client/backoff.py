"""Exponential backoff with jitter, for reconnecting to a server that went away.

The schedule is the same in every Rigger client (clients/README.md,
"Reconnecting"): 100 ms, doubling, capped at 5 s, each delay shortened at
random by up to 20 %.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays that grow from `initial` by `multiplier` up to `maximum`, each jittered.

    Jitter only ever shortens a delay, by up to the fraction `jitter`, so
    `maximum` stays a true cap while many sidecars cut off by one server
    restart still do not all come back in the same instant.
    """

    def __init__(
        self,
        initial: float = 0.1,
        maximum: float = 5.0,
        multiplier: float = 2.0,
        jitter: float = 0.2,
    ) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError("need 0 < initial <= maximum")
        if multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        self.initial = initial
        self.maximum = maximum
        self.multiplier = multiplier
        self.jitter = jitter
        self._retries = 0

    def delay(self, retries: int, draw: float) -> float:
        """The delay before retry number `retries` (from 0), for a random `draw` in [0, 1)."""
        try:
            base = self.initial * self.multiplier ** max(retries, 0)
        except OverflowError:
            base = self.maximum
        return min(base, self.maximum) * (1 - self.jitter * draw)

    def next_delay(self) -> float:
        """The delay to wait now, in seconds; the one after it will be longer."""
        delay = self.delay(self._retries, random.random())
        self._retries += 1
        return delay

    def reset(self) -> None:
        """Start again from `initial`: the connection proved healthy."""
        self._retries = 0
