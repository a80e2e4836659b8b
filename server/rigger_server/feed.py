"""A subscriber's feed: replayed events from the log first, then live ones, gapless.

The subscription is registered before the log is read, and live events that
replay already delivered are skipped by sequence: that order makes the
hand-over from replay to live free of gaps and duplicates.

Feeds that may carry many events per message (the batched stream) take turns:
a live batch is taken only while holding one of a few shared turns, and it is
everything queued by then. The reason is the event loop: it runs every
stream's sends and every call's steps from one queue, a pass at a time, and
gRPC's asyncio server accepts one new call per pass. When a thousand streams
all send in every pass, each pass is long, and a write waits a pass for each
of its steps. Taking turns keeps passes short, so writes keep flowing, and
whatever arrives while a stream waits for its turn rides in its next message:
batches grow instead of messages multiplying. A turn is held until the
consumer comes back for more (it has sent the batch), and turns go round-robin.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable

from rigger_server.domain import Event
from rigger_server.events import Broadcaster, EventFilter

# Reads up to `limit` committed events after a sequence, oldest first.
ReadLog = Callable[[int, int], Awaitable[list[Event]]]

# Events read from the log per step of a replay.
REPLAY_PAGE = 500


class Feed:
    """A registered subscription and, with `after_sequence`, its replay."""

    def __init__(
        self,
        broadcaster: Broadcaster,
        read_log: ReadLog,
        event_filter: EventFilter,
        after_sequence: int | None,
        turns: asyncio.Semaphore | None = None,
    ) -> None:
        self._broadcaster = broadcaster
        self._read_log = read_log
        self._filter = event_filter
        self._after = after_sequence
        self._turns = turns
        # Registered and head read in one step on the loop: every event after
        # the head is still to be published, so it reaches the new queue.
        self._subscription = broadcaster.subscribe(event_filter)
        # The newest event published to subscribers when the feed was opened.
        # Without `after_sequence` the feed delivers exactly the events after it.
        self.head = broadcaster.head
        self._ended: type[Exception] | None = None

    async def batches(self) -> AsyncGenerator[list[Event], None]:
        """Yield batches of matching events, oldest first.

        Raises events.Lagged if the subscriber falls behind its buffer while
        live, and events.Closed at shutdown.
        """
        cursor = self.head if self._after is None else self._after
        if self._after is not None:
            while True:
                async with contextlib.aclosing(self._pages(cursor)) as pages:
                    async for events in pages:
                        cursor = events[-1].sequence
                        matched = [e for e in events if self._filter.matches(e)]
                        if matched:
                            yield matched
                if not self._subscription.overflowed:
                    break
                # Live events arrived faster than replay drained them. The log
                # has them all, so register afresh and keep replaying from it.
                self.close()
                self._subscription = self._broadcaster.subscribe(self._filter)
        async with contextlib.aclosing(self._live(cursor)) as live:
            async for batch in live:
                yield batch

    async def _pages(self, cursor: int) -> AsyncGenerator[list[Event], None]:
        """The stored events after `cursor`, a page at a time, to the end of the log."""
        while True:
            if self._ended is not None:
                raise self._ended()
            events = await self._read_log(cursor, REPLAY_PAGE)
            if events:
                yield events
                cursor = events[-1].sequence
            if len(events) < REPLAY_PAGE:
                return

    async def _live(self, cursor: int) -> AsyncGenerator[list[Event], None]:
        """Queued live events after `cursor` (what replay delivered is skipped)."""
        subscription = self._subscription
        turns = self._turns
        while True:
            batch = await subscription.next_batch()
            if turns is None:
                batch = [event for event in batch if event.sequence > cursor]
                if batch:
                    yield batch
                continue
            async with turns:  # held until the consumer comes back: it has sent the batch
                batch += subscription.take()
                batch = [event for event in batch if event.sequence > cursor]
                if batch:
                    yield batch

    def end(self, reason: type[Exception]) -> None:
        """End the feed: `batches()` raises `reason` at its next step, replaying or live."""
        self._ended = reason
        self._subscription.end(reason)
        self.close()

    def close(self) -> None:
        """Unregister the subscription. Safe to call twice."""
        self._broadcaster.unsubscribe(self._subscription)
