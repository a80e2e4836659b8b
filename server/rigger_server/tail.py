"""The log tail: with several worker processes, every worker publishes the whole event log.

Each worker commits its own writes and serves its own subscribers, so a worker
must also publish what the others commit. The tail does that in sequence
order, with no gaps: a local commit that directly follows what was published
goes out at once; anything else (another worker's commit, announced by
`seen()` or found by the periodic check) is read back from the store in order.
SQLite hands out sequences under its single write lock, so the log's order is
the commit order whichever worker wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from rigger_server.domain import Event
from rigger_server.events import Broadcaster
from rigger_server.store import Store

log = logging.getLogger(__name__)

# How often the tail looks at the log even without an announcement: a safety
# net for a lost datagram, not the normal path.
CHECK_SECONDS = 0.5
PAGE = 500


class LogTail:
    """Publishes committed events to the broadcaster in sequence order, whoever wrote them."""

    def __init__(
        self,
        broadcaster: Broadcaster,
        store: Store,
        announce: Callable[[int], None],
    ) -> None:
        self._broadcaster = broadcaster
        self._store = store
        self._announce = announce
        self._target = broadcaster.head
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin following the log."""
        self._task = asyncio.create_task(self._follow(), name="rigger-log-tail")

    async def close(self) -> None:
        """Stop following the log."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def committed(self, events: list[Event]) -> None:
        """This worker committed `events` (in order): publish them and tell the others."""
        last = events[-1].sequence
        # First, so the other workers start reading while this one fans out.
        self._announce(last)
        if events[0].sequence == self._broadcaster.head + 1:
            self._broadcaster.publish(events)
        else:
            # Another worker's events come first; the log has ours too.
            self.seen(last)

    def seen(self, sequence: int) -> None:
        """The log holds events up to `sequence`; publish any not published yet."""
        if sequence > self._target:
            self._target = sequence
            self._wake.set()

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        store = self._store
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), CHECK_SECONDS)
            self._wake.clear()
            try:
                if self._target <= self._broadcaster.head:
                    head = await loop.run_in_executor(None, store.last_sequence)
                    self._target = max(self._target, head)
                while self._broadcaster.head < self._target:
                    events = await loop.run_in_executor(
                        None, store.events_after, self._broadcaster.head, PAGE
                    )
                    if not events:
                        break
                    # A local commit may have published some of these meanwhile.
                    fresh = [e for e in events if e.sequence > self._broadcaster.head]
                    self._broadcaster.publish(fresh)
            except Exception:
                # The store is briefly unreadable (closing, disk trouble): try
                # again on the next announcement or check rather than stop.
                log.exception("reading the event log failed")
