"""The broadcaster: committed events fanned out to every subscriber's bounded queue.

Publishing never waits on a subscriber. Each subscriber owns a queue of at most
`buffer` events and `buffer_bytes` bytes; a subscriber whose queue is full is
cut loose and told how far it got, so one slow sidecar can never hold back the
writers or the others, nor hold on to more memory than that.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import Iterable

from rigger_server.domain import Event, EventType
from rigger_server.errors import ResourceExhausted
from rigger_server.limits import BATCH_TURN_LEASE_SECONDS, Limits

# Events queued per subscriber before a lagging one is ended: the default of
# `rig grpc --buffer` (app.ServerConfig.buffer).
DEFAULT_BUFFER = 1000


@dataclasses.dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a subscriber wants. Both parts apply together."""

    event_types: frozenset[EventType] = frozenset()
    assignee: str | None = None

    def matches(self, event: Event) -> bool:
        """True if the subscriber asked for this event."""
        if self.event_types and event.event_type not in self.event_types:
            return False
        return self.assignee is None or event.assignee == self.assignee


class Lagged(Exception):
    """The subscriber fell further behind than its buffer allows."""


class LaggedBytes(Lagged):
    """The subscriber's queued events outgrew its byte budget."""


class Closed(Exception):
    """The broadcaster is shutting down."""


class Turns:
    """A few turns to take and send queued events, shared by many subscriptions, in order.

    The batched stream's subscriptions take turns (see feed.py for why): a
    subscription with events queued asks for a turn, is woken only once it
    has one, takes everything queued by then, and gives the turn back when
    its reader comes back for more, i.e. once the batch is sent. The others
    wait in line, their batches growing meanwhile.

    A turn is a lease of `lease_seconds`: a send that waits on a client that
    does not read (its HTTP/2 window is full) would otherwise keep its turn
    for as long as the client likes, and as many such clients as there are
    turns would starve every other batched stream. A turn not given back in
    time goes to the next in line; its holder asks again once its reader
    comes back, and meanwhile asks for none.
    """

    def __init__(self, count: int, lease_seconds: float = BATCH_TURN_LEASE_SECONDS) -> None:
        if count < 1:
            raise ValueError("there must be at least one turn")
        if not lease_seconds > 0:
            raise ValueError("a turn's lease must be longer than 0 seconds")
        self.count = count
        self.lease_seconds = lease_seconds
        self._free = count
        self._line: collections.deque[Subscription] = collections.deque()
        # Who holds a turn, and when its lease ends, in the order the turns
        # were granted: every lease is as long, so the first ends first.
        self._holders: dict[Subscription, float] = {}
        # One timer for the soonest lease end, not one per grant.
        self._timer: asyncio.TimerHandle | None = None
        # Turns taken back from holders that kept them past their lease.
        self.reclaimed_total = 0

    def ask(self, subscription: Subscription) -> None:
        """Give `subscription` a turn now if one is free, else put it in line."""
        if self._free:
            self._free -= 1
            self._grant(subscription)
        else:
            self._line.append(subscription)

    @property
    def free(self) -> int:
        """Turns nobody holds now."""
        return self._free

    @property
    def waiting(self) -> int:
        """Subscriptions in line for a turn now (for the metrics; counts the line)."""
        return sum(1 for subscription in self._line if subscription.waiting_for_turn)

    def give_back(self, subscription: Subscription) -> None:
        """`subscription` is done with its turn: hand it to the first in line that wants it."""
        if self._holders.pop(subscription, None) is not None:
            self._pass_on()

    def _grant(self, subscription: Subscription) -> None:
        loop = asyncio.get_running_loop()
        ends = loop.time() + self.lease_seconds
        self._holders[subscription] = ends
        if self._timer is None:
            self._timer = loop.call_at(ends, self._reclaim)
        subscription.grant()

    def _pass_on(self) -> None:
        while self._line:
            subscription = self._line.popleft()
            if subscription.waiting_for_turn:
                self._grant(subscription)
                return
        self._free += 1

    def _reclaim(self) -> None:
        """Take back every turn held past its lease and hand each to the next in line."""
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        lapsed = []
        for subscription, ends in self._holders.items():
            if ends > now:
                break
            lapsed.append(subscription)
        for subscription in lapsed:
            del self._holders[subscription]
            self.reclaimed_total += 1
            subscription.lease_ended()
            self._pass_on()
        if self._holders:
            self._timer = loop.call_at(next(iter(self._holders.values())), self._reclaim)


# A subscription's part in its Turns, when it has some: none; in line; holding
# one (its reader takes a batch and sends it); its turn taken back at the end
# of its lease, its reader not back yet.
_IDLE, _WAITING, _HOLDING, _LAPSED = range(4)


class Subscription:
    """One subscriber's bounded queue of committed events: at most `buffer` events and
    `buffer_bytes` bytes (an event larger than that alone is still queued alone)."""

    def __init__(
        self,
        event_filter: EventFilter,
        buffer: int,
        turns: Turns | None = None,
        buffer_bytes: int | None = None,
    ) -> None:
        self.filter = event_filter
        self.buffer = buffer
        self.buffer_bytes = buffer_bytes
        self._queue: collections.deque[Event] = collections.deque()
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()
        self._ended: type[Exception] | None = None
        self._turns = turns
        self._turn = _IDLE
        # Turns are asked for only once the reader reads live events: a turn
        # held while it still replays from the log would idle.
        self._reading = False

    def offer(self, event: Event) -> bool:
        """Queue an event if it matches. Returns False when the queue overflowed."""
        if self._ended is not None or not self.filter.matches(event):
            return True
        size = len(event.payload)
        if len(self._queue) >= self.buffer:
            self.end(Lagged)
            return False
        if (
            self.buffer_bytes is not None
            and self._queue
            and self._queued_bytes + size > self.buffer_bytes
        ):
            self.end(LaggedBytes)
            return False
        self._queue.append(event)
        self._queued_bytes += size
        if self._turns is None:
            self._wakeup.set()
        elif self._turn == _IDLE and self._reading:
            self._turn = _WAITING
            self._turns.ask(self)
        return True

    @property
    def queued_bytes(self) -> int:
        """The bytes of the events queued now."""
        return self._queued_bytes

    @property
    def queued(self) -> int:
        """How many events are queued now."""
        return len(self._queue)

    @property
    def waiting_for_turn(self) -> bool:
        """True while in line for a turn (and not ended meanwhile)."""
        return self._turn == _WAITING and self._ended is None

    def grant(self) -> None:
        """Called by Turns: this subscription has a turn; its reader may take its events."""
        self._turn = _HOLDING
        self._wakeup.set()

    def lease_ended(self) -> None:
        """Called by Turns: the turn was taken back, its lease over.

        No new turn is asked for until the reader comes back: a send that
        waits on the client must not take one turn after another.
        """
        self._turn = _LAPSED

    def _give_back_turn(self) -> None:
        if self._turn == _HOLDING:
            assert self._turns is not None
            self._turns.give_back(self)
        self._turn = _IDLE

    def end(self, reason: type[Exception]) -> None:
        """End the subscription: its reader gets `reason` once the queue is empty."""
        self._ended = reason
        self._queue.clear()  # release the memory now, not when the stream ends
        self._queued_bytes = 0
        self._give_back_turn()
        self._wakeup.set()

    @property
    def overflowed(self) -> bool:
        """True once the queue has overflowed; queued events are gone."""
        return self._ended is not None and issubclass(self._ended, Lagged)

    async def next_batch(self) -> list[Event]:
        """Wait for queued events and take them all, oldest first.

        With turns, calling it again gives back the turn the last batch was
        taken with, and waits for a turn before taking. Raises Lagged after an
        overflow and Closed at shutdown.
        """
        if self._turns is not None:
            self._reading = True
            self._give_back_turn()
            if self._queue and self._ended is None:
                self._turn = _WAITING  # the back of the line: others go first
                self._turns.ask(self)
        while not self._queue or self._turn == _WAITING:
            if self._ended is not None:
                raise self._ended()
            self._wakeup.clear()
            await self._wakeup.wait()
        batch = list(self._queue)
        self._queue.clear()
        self._queued_bytes = 0
        return batch

    def release(self) -> None:
        """Give back any turn: the reader is gone."""
        self._give_back_turn()


class Broadcaster:
    """Fans committed events out to subscriptions. Lives on the event loop's thread."""

    def __init__(
        self,
        buffer: int = DEFAULT_BUFFER,
        max_subscribers: int = Limits().max_subscribers,
        head: int = 0,
        buffer_bytes: int = Limits().buffer_bytes,
    ) -> None:
        if buffer < 1:
            raise ValueError("buffer must be at least 1")
        if buffer_bytes < 1:
            raise ValueError("buffer_bytes must be at least 1")
        self.buffer = buffer
        self.buffer_bytes = buffer_bytes
        # The sequence of the newest event published: a subscription registered
        # now receives exactly the events after it.
        self.head = head
        self.max_subscribers = max_subscribers
        # In subscription order (a dict keeps it), so every publish offers
        # events in the same order and turns go first come, first served.
        self._subscriptions: dict[Subscription, None] = {}
        self._closed = False
        self.lagged_total = 0

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are live."""
        return len(self._subscriptions)

    @property
    def deepest_queue(self) -> int:
        """Events queued for the subscription furthest behind (0 without any)."""
        return max((s.queued for s in self._subscriptions), default=0)

    def subscribe(self, event_filter: EventFilter, turns: Turns | None = None) -> Subscription:
        """Register a new subscription; it receives every event published from now on.

        With `turns`, its reader is woken only when it holds one of them.
        """
        if self._closed:
            raise Closed()
        if len(self._subscriptions) >= self.max_subscribers:
            raise ResourceExhausted(
                f"too many subscriber streams: the server's limit is {self.max_subscribers} "
                "(rig grpc --max-subscribers)"
            )
        subscription = Subscription(event_filter, self.buffer, turns, self.buffer_bytes)
        self._subscriptions[subscription] = None
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a subscription and give back any turn it holds. Safe to call twice."""
        subscription.release()
        self._subscriptions.pop(subscription, None)

    def publish(self, events: Iterable[Event]) -> None:
        """Offer committed events, in commit order, to every subscription."""
        for event in events:
            self.head = event.sequence
            lagged = [s for s in self._subscriptions if not s.offer(event)]
            for subscription in lagged:
                self._subscriptions.pop(subscription, None)
            self.lagged_total += len(lagged)

    def close(self) -> None:
        """End every subscription with Closed and refuse new ones. Safe to call twice."""
        self._closed = True
        for subscription in self._subscriptions:
            subscription.end(Closed)
        self._subscriptions.clear()
