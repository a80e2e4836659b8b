"""The broadcaster: committed events fanned out to every subscriber's bounded queue.

Publishing never waits on a subscriber. Each subscriber owns a queue of at most
`buffer` events; a subscriber whose queue is full is cut loose and told how far
it got, so one slow sidecar can never hold back the writers or the others.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import Iterable

from rigger_server.domain import Event, EventType
from rigger_server.errors import ResourceExhausted


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


class Closed(Exception):
    """The broadcaster is shutting down."""


class Subscription:
    """One subscriber's bounded queue of committed events."""

    def __init__(self, event_filter: EventFilter, buffer: int) -> None:
        self.filter = event_filter
        self.buffer = buffer
        self._queue: collections.deque[Event] = collections.deque()
        self._wakeup = asyncio.Event()
        self._ended: type[Exception] | None = None

    def offer(self, event: Event) -> bool:
        """Queue an event if it matches. Returns False when the queue overflowed."""
        if self._ended is not None or not self.filter.matches(event):
            return True
        if len(self._queue) >= self.buffer:
            self.end(Lagged)
            return False
        self._queue.append(event)
        self._wakeup.set()
        return True

    def end(self, reason: type[Exception]) -> None:
        """End the subscription: its reader gets `reason` once the queue is empty."""
        self._ended = reason
        self._queue.clear()  # release the memory now, not when the stream ends
        self._wakeup.set()

    @property
    def overflowed(self) -> bool:
        """True once the queue has overflowed; queued events are gone."""
        return self._ended is Lagged

    async def next_batch(self) -> list[Event]:
        """Wait for queued events and take them all, oldest first.

        Raises Lagged after an overflow and Closed at shutdown.
        """
        while not self._queue:
            if self._ended is not None:
                raise self._ended()
            self._wakeup.clear()
            await self._wakeup.wait()
        batch = list(self._queue)
        self._queue.clear()
        return batch

    def take(self) -> list[Event]:
        """Take whatever is queued now, without waiting (nothing once ended)."""
        batch = list(self._queue)
        self._queue.clear()
        return batch


class Broadcaster:
    """Fans committed events out to subscriptions. Lives on the event loop's thread."""

    def __init__(
        self,
        buffer: int = 1000,
        max_subscribers: int = 10_000,
        head: int = 0,
    ) -> None:
        if buffer < 1:
            raise ValueError("buffer must be at least 1")
        self.buffer = buffer
        # The sequence of the newest event published: a subscription registered
        # now receives exactly the events after it.
        self.head = head
        self.max_subscribers = max_subscribers
        self._subscriptions: set[Subscription] = set()
        self._closed = False
        self.lagged_total = 0

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are live."""
        return len(self._subscriptions)

    def subscribe(self, event_filter: EventFilter) -> Subscription:
        """Register a new subscription; it receives every event published from now on."""
        if self._closed:
            raise Closed()
        if len(self._subscriptions) >= self.max_subscribers:
            raise ResourceExhausted(
                f"too many subscriber streams: the server's limit is {self.max_subscribers} "
                "(rig grpc --max-subscribers)"
            )
        subscription = Subscription(event_filter, self.buffer)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a subscription. Safe to call twice."""
        self._subscriptions.discard(subscription)

    def publish(self, events: Iterable[Event]) -> None:
        """Offer committed events, in commit order, to every subscription."""
        for event in events:
            self.head = event.sequence
            lagged = [s for s in self._subscriptions if not s.offer(event)]
            for subscription in lagged:
                self._subscriptions.discard(subscription)
            self.lagged_total += len(lagged)

    def close(self) -> None:
        """End every subscription with Closed and refuse new ones. Safe to call twice."""
        self._closed = True
        for subscription in self._subscriptions:
            subscription.end(Closed)
        self._subscriptions.clear()
