"""The log tail: every server publishes the whole event log, whoever wrote it.

A server commits its own writes and serves its own subscribers, but other
processes may write to the same log (the workers of `rig grpc --workers N`, or
other servers on the same database). The tail publishes every committed event
in sequence order, with no gaps: a local commit that directly follows what
was published goes out at once; anything else (another process's commit,
announced by `seen()` or found by the periodic check) is read back from the
store in order, as the bytes the log keeps. The store hands out sequences
under its single write lock, so the log's order is the commit order whoever
wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Callable

from rigger_server.domain import Event
from rigger_server.errors import Unavailable
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
        announce: Callable[[int], None] = lambda sequence: None,
    ) -> None:
        self._broadcaster = broadcaster
        self._store = store
        self._announce = announce
        self._target = broadcaster.head
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # (last sequence, tie-breaker, callback): local commits whose events
        # wait behind other processes' events still to be read.
        self._waiting: list[tuple[int, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._closed = False

    def start(self) -> None:
        """Begin following the log."""
        self._task = asyncio.create_task(self._follow(), name="rigger-log-tail")

    async def close(self) -> None:
        """Stop following the log; later commits are answered without being published."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # Committed, so durable: their callers are answered even though the
        # server stops before publishing them.
        while self._waiting:
            heapq.heappop(self._waiting)[2]()

    def committed(self, events: list[Event], then: Callable[[], None]) -> None:
        """This server committed `events` (in order): publish them, then call `then`.

        `then` runs once every event up to the last of these is published,
        which is at once unless other processes' events come first.
        """
        if self._closed:
            then()  # stopping: the commit is durable, nobody is subscribed
            return
        last = events[-1].sequence
        # First, so the other servers start reading while this one fans out.
        self._announce(last)
        if events[0].sequence == self._broadcaster.head + 1:
            self._broadcaster.publish(events)
            self._release()
            then()
            return
        if last <= self._broadcaster.head:
            then()  # the periodic check already read them back
            return
        # Another process's events come first; the log has ours too.
        heapq.heappush(self._waiting, (last, next(self._order), then))
        self.seen(last)

    async def reach(self, sequence: int) -> None:
        """Return once every event up to `sequence` is published: at once if it already is."""
        if sequence <= self._broadcaster.head or self._closed:
            return
        reached: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def release() -> None:
            if not reached.done():  # the waiter may have been cancelled
                reached.set_result(None)

        heapq.heappush(self._waiting, (sequence, next(self._order), release))
        self.seen(sequence)
        await reached

    def seen(self, sequence: int) -> None:
        """The log holds events up to `sequence`; publish any not published yet."""
        if sequence > self._target:
            self._target = sequence
            self._wake.set()

    def _release(self) -> None:
        head = self._broadcaster.head
        while self._waiting and self._waiting[0][0] <= head:
            heapq.heappop(self._waiting)[2]()

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        store = self._store
        broadcaster = self._broadcaster
        unavailable = False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), CHECK_SECONDS)
            self._wake.clear()
            try:
                if self._target <= broadcaster.head:
                    head = await loop.run_in_executor(None, store.last_sequence)
                    self._target = max(self._target, head)
                while broadcaster.head < self._target:
                    # At most a subscriber's byte budget at once, like a replay's page.
                    events = await loop.run_in_executor(
                        None, store.events_after, broadcaster.head, PAGE, broadcaster.buffer_bytes
                    )
                    if not events:
                        break
                    # A local commit may have published some of these meanwhile.
                    broadcaster.publish([e for e in events if e.sequence > broadcaster.head])
                    # Not held until the next read: the queues that want them hold them.
                    del events
                    self._release()
                if unavailable:
                    log.info("reading the event log again")
                    unavailable = False
            except Unavailable as exc:
                # The database is unreachable (PostgreSQL restarting): said
                # once, and the log is read again on every check until it is back.
                if not unavailable:
                    log.warning("cannot read the event log: %s; retrying", exc)
                unavailable = True
            except Exception:
                # The store is briefly unreadable (closing, disk trouble): try
                # again on the next announcement or check rather than stop.
                log.exception("reading the event log failed")
