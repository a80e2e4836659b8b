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
consumer comes back for more (it has sent the batch), and turns go round-robin;
a turn held past its lease (limits.BATCH_TURN_LEASE_SECONDS: the send waits on
a client that does not read) goes to the next in line.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable

from rigger_server.domain import Event
from rigger_server.events import Broadcaster, EventFilter, Turns

# Reads committed events after a sequence, oldest first: at most `limit`, and
# none after their payloads reach `max_bytes` (the first always comes).
ReadLog = Callable[[int, int, int], Awaitable[list[Event]]]

# Events read from the log per step of a replay. A page is also held to the
# subscriber's byte budget (--buffer-bytes), as its queue is: a subscriber
# that stops reading while it replays holds the page it was sending.
REPLAY_PAGE = 500


class Feed:
    """A registered subscription and, with `after_sequence`, its replay.

    Read it with `next_batch()` (or iterate `batches()`): replayed pages
    first, then live events, each batch the matching events in order.
    """

    def __init__(
        self,
        broadcaster: Broadcaster,
        read_log: ReadLog,
        event_filter: EventFilter,
        after_sequence: int | None,
        turns: Turns | None = None,
    ) -> None:
        self._broadcaster = broadcaster
        self._read_log = read_log
        self._filter = event_filter
        self._after = after_sequence
        self._turns = turns
        # Registered and head read in one step on the loop: every event after
        # the head is still to be published, so it reaches the new queue.
        self._subscription = broadcaster.subscribe(event_filter, turns)
        # The newest event published to subscribers when the feed was opened.
        # Without `after_sequence` the feed delivers exactly the events after it.
        self.head = broadcaster.head
        self._ended: type[Exception] | None = None
        # Replay reads the log after `_cursor` until it has passed `_replay_to`,
        # the head when the subscription was registered: every later event
        # reaches its queue. Live events up to `_live_after` were delivered
        # by replay (or precede the feed) and are skipped.
        self._replaying = after_sequence is not None
        self._cursor = self.head if after_sequence is None else after_sequence
        self._replay_to = self.head
        self._live_after = self._cursor

    async def next_batch(self) -> list[Event]:
        """The next matching events, oldest first, waiting for live ones; never empty.

        Raises events.Lagged if the subscriber falls behind its buffer while
        live, events.Closed at shutdown, and what `end()` was given.
        """
        while self._replaying:
            batch = await self._replay_page()
            if batch:
                return batch
        return await self._live_batch()

    async def batches(self) -> AsyncGenerator[list[Event], None]:
        """`next_batch()` as an async iterator."""
        while True:
            yield await self.next_batch()

    async def _replay_page(self) -> list[Event]:
        """One page of stored events after the cursor, filtered; goes live once past the head.

        A page may be short of REPLAY_PAGE because of its byte budget, so the
        head the subscription was registered at, not a short page, says
        where replay ends.
        """
        if self._ended is not None:
            raise self._ended()
        events = await self._read_log(self._cursor, REPLAY_PAGE, self._broadcaster.buffer_bytes)
        if events:
            self._cursor = events[-1].sequence
        # An empty page short of the head: the log lost events (replaced); nothing to wait for.
        if self._cursor >= self._replay_to or not events:
            if self._subscription.overflowed:
                # Live events arrived faster than replay drained them. The log
                # has them all, so register afresh and keep replaying from it.
                self.close()
                self._subscription = self._broadcaster.subscribe(self._filter, self._turns)
                self._replay_to = self._broadcaster.head
            else:
                self.hand_over(self._cursor)
        return [event for event in events if self._filter.matches(event)]

    def hand_over(self, replayed_to: int) -> None:
        """Replay delivered everything up to `replayed_to`: live events follow it.

        The feed calls it itself, once replay has passed the head; public as
        a test seam (seams.py), so a broken server can move the hand-over.
        """
        self._replaying = False
        self._live_after = replayed_to

    async def _live_batch(self) -> list[Event]:
        while True:
            # With turns, asking again also gives back the turn the last batch
            # was taken with: the consumer is back, so it has sent it.
            batch = await self._subscription.next_batch()
            if batch[0].sequence <= self._live_after:  # only right after replay
                batch = [event for event in batch if event.sequence > self._live_after]
            if batch:
                return batch

    def end(self, reason: type[Exception]) -> None:
        """End the feed: `next_batch()` raises `reason` at its next step, replaying or live."""
        self._ended = reason
        self._subscription.end(reason)
        self.close()

    def close(self) -> None:
        """Unregister the subscription (and give back any turn). Safe to call twice."""
        self._broadcaster.unsubscribe(self._subscription)
