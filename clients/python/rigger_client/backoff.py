"""Exponential backoff with jitter, for reconnecting to a server that went away."""

from __future__ import annotations

import random


class Backoff:
    """Delays that grow from `initial` by `multiplier` up to `maximum`, each jittered.

    Jitter spreads reconnects so that many sidecars cut off by one server
    restart do not all come back in the same instant.
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
        self._current = initial

    def next_delay(self) -> float:
        """The delay to wait now, in seconds; the one after it will be longer."""
        base = self._current
        self._current = min(self.maximum, self._current * self.multiplier)
        spread = base * self.jitter
        return min(self.maximum, max(0.0, base + random.uniform(-spread, spread)))

    def reset(self) -> None:
        """Start again from `initial`: the connection proved healthy."""
        self._current = self.initial
