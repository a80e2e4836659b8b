"""The broadcaster: committed events fanned out to bounded subscriber queues."""

from __future__ import annotations

import asyncio

import pytest
from rigger_server.domain import Event, EventType
from rigger_server.errors import ResourceExhausted
from rigger_server.events import Broadcaster, Closed, EventFilter, Lagged, LaggedBytes, Turns

from unit.drafts import WAIT, sequences


def event(
    sequence: int,
    kind: EventType = EventType.CREATED,
    assignee: str | None = None,
    size: int | None = None,
) -> Event:
    payload = f"bytes {sequence}".encode() if size is None else bytes(size)
    return Event(sequence, kind, f"task-{sequence}", assignee, payload)


async def next_batch(subscription) -> list[Event]:
    return await asyncio.wait_for(subscription.next_batch(), WAIT)


async def test_every_subscriber_receives_every_event_in_publish_order():
    broadcaster = Broadcaster()
    subscriptions = [broadcaster.subscribe(EventFilter()) for _ in range(3)]
    broadcaster.publish([event(1), event(2)])
    broadcaster.publish([event(3)])
    for subscription in subscriptions:
        assert sequences(await next_batch(subscription)) == [1, 2, 3]


async def test_a_subscriber_receives_only_events_published_after_it_subscribed():
    broadcaster = Broadcaster()
    broadcaster.publish([event(1)])
    subscription = broadcaster.subscribe(EventFilter())
    broadcaster.publish([event(2)])
    assert sequences(await next_batch(subscription)) == [2]


def test_the_head_is_the_newest_published_sequence():
    broadcaster = Broadcaster(head=7)
    assert broadcaster.head == 7
    broadcaster.publish([event(8), event(9)])
    assert broadcaster.head == 9


async def test_event_types_and_assignee_filter_together():
    broadcaster = Broadcaster()
    wanted = EventFilter(frozenset({EventType.CREATED, EventType.DELETED}), assignee="bob")
    subscription = broadcaster.subscribe(wanted)
    broadcaster.publish(
        [
            event(1, EventType.CREATED, "alice"),
            event(2, EventType.CREATED, "bob"),
            event(3, EventType.UPDATED, "bob"),
            event(4, EventType.DELETED, "bob"),
            event(5, EventType.DELETED, None),
        ]
    )
    assert sequences(await next_batch(subscription)) == [2, 4]


def test_an_empty_filter_matches_every_event_and_unspecified_matches_none():
    every = EventFilter()
    unspecified = EventFilter(frozenset({EventType.UNSPECIFIED}))
    for kind in list(EventType)[1:]:
        assert every.matches(event(1, kind, "x"))
        assert not unspecified.matches(event(1, kind, "x"))


async def test_a_subscriber_whose_queue_overflows_ends_lagged_and_is_dropped():
    broadcaster = Broadcaster(buffer=2)
    slow = broadcaster.subscribe(EventFilter())
    healthy = broadcaster.subscribe(EventFilter())
    broadcaster.publish([event(1), event(2)])
    assert sequences(await next_batch(healthy)) == [1, 2]
    broadcaster.publish([event(3)])
    assert slow.overflowed
    assert broadcaster.subscriber_count == 1
    assert broadcaster.lagged_total == 1
    with pytest.raises(Lagged):
        await next_batch(slow)
    assert sequences(await next_batch(healthy)) == [3]


async def test_events_a_filter_refuses_do_not_fill_the_queue():
    broadcaster = Broadcaster(buffer=1)
    subscription = broadcaster.subscribe(EventFilter(assignee="bob"))
    broadcaster.publish([event(n, assignee="alice") for n in range(1, 10)])
    broadcaster.publish([event(10, assignee="bob")])
    assert sequences(await next_batch(subscription)) == [10]


async def test_a_waiting_subscriber_wakes_when_an_event_is_published():
    broadcaster = Broadcaster()
    subscription = broadcaster.subscribe(EventFilter())
    waiting = asyncio.ensure_future(subscription.next_batch())
    await asyncio.sleep(0)  # let it start waiting
    assert not waiting.done()
    broadcaster.publish([event(1)])
    assert sequences(await asyncio.wait_for(waiting, WAIT)) == [1]


async def test_closing_ends_every_subscription_and_refuses_new_ones():
    broadcaster = Broadcaster()
    subscription = broadcaster.subscribe(EventFilter())
    broadcaster.close()
    broadcaster.close()
    with pytest.raises(Closed):
        await next_batch(subscription)
    with pytest.raises(Closed):
        broadcaster.subscribe(EventFilter())


def test_subscribers_beyond_the_limit_are_refused_naming_the_flag():
    broadcaster = Broadcaster(max_subscribers=2)
    first = broadcaster.subscribe(EventFilter())
    broadcaster.subscribe(EventFilter())
    with pytest.raises(ResourceExhausted, match="--max-subscribers"):
        broadcaster.subscribe(EventFilter())
    broadcaster.unsubscribe(first)
    broadcaster.unsubscribe(first)
    broadcaster.subscribe(EventFilter())
    assert broadcaster.subscriber_count == 2


def test_a_buffer_below_one_is_refused():
    with pytest.raises(ValueError, match="buffer"):
        Broadcaster(buffer=0)


# --- the byte budget ----------------------------------------------------------------


async def test_a_subscriber_whose_queued_bytes_outgrow_its_budget_ends_lagged_and_is_dropped():
    broadcaster = Broadcaster(buffer=1000, buffer_bytes=1000)
    stalled = broadcaster.subscribe(EventFilter())
    healthy = broadcaster.subscribe(EventFilter())
    broadcaster.publish([event(1, size=400), event(2, size=400)])
    assert stalled.queued_bytes == 800
    assert sequences(await next_batch(healthy)) == [1, 2]
    broadcaster.publish([event(3, size=400)])  # 1200 bytes: over the stalled one's budget
    assert stalled.overflowed
    assert stalled.queued_bytes == 0  # its events are let go at once
    assert broadcaster.subscriber_count == 1
    assert broadcaster.lagged_total == 1
    with pytest.raises(LaggedBytes):
        await next_batch(stalled)
    assert sequences(await next_batch(healthy)) == [3]


async def test_taking_a_batch_frees_its_bytes_from_the_budget():
    broadcaster = Broadcaster(buffer_bytes=1000)
    subscription = broadcaster.subscribe(EventFilter())
    for sequence in range(1, 11):
        broadcaster.publish([event(sequence, size=600)])
        assert sequences(await next_batch(subscription)) == [sequence]
    assert not subscription.overflowed


async def test_an_event_larger_than_the_budget_is_still_queued_alone():
    broadcaster = Broadcaster(buffer_bytes=1000)
    subscription = broadcaster.subscribe(EventFilter())
    broadcaster.publish([event(1, size=5000)])
    assert sequences(await next_batch(subscription)) == [1]
    broadcaster.publish([event(2, size=10), event(3, size=5000)])
    with pytest.raises(LaggedBytes):
        await next_batch(subscription)


async def test_events_a_filter_refuses_cost_no_bytes():
    broadcaster = Broadcaster(buffer_bytes=1000)
    subscription = broadcaster.subscribe(EventFilter(assignee="bob"))
    broadcaster.publish([event(n, assignee="alice", size=5000) for n in range(1, 10)])
    broadcaster.publish([event(10, assignee="bob", size=10)])
    assert sequences(await next_batch(subscription)) == [10]


def test_a_byte_budget_below_one_is_refused():
    with pytest.raises(ValueError, match="buffer_bytes"):
        Broadcaster(buffer_bytes=0)


# --- turns (the batched stream's subscribers) -------------------------------------


async def reading(subscription) -> asyncio.Future[list[Event]]:
    """Its reader asking for the next batch, in the background; started before returning."""
    asking = asyncio.ensure_future(subscription.next_batch())
    await asyncio.sleep(0)  # one loop step: the reader is now waiting
    return asking


async def test_with_one_turn_a_second_reader_waits_and_then_takes_everything_queued():
    broadcaster = Broadcaster()
    turns = Turns(1)
    first, second = (broadcaster.subscribe(EventFilter(), turns) for _ in range(2))
    asking_first, asking_second = await reading(first), await reading(second)
    broadcaster.publish([event(1)])
    assert sequences(await asyncio.wait_for(asking_first, WAIT)) == [1]  # first holds the turn
    broadcaster.publish([event(2)])
    assert not asking_second.done()
    again = await reading(first)  # first comes back for more: it has sent its batch
    assert sequences(await asyncio.wait_for(asking_second, WAIT)) == [1, 2]
    again.cancel()


async def test_readers_get_turns_in_the_order_they_asked():
    broadcaster = Broadcaster()
    turns = Turns(1)
    subscriptions = [broadcaster.subscribe(EventFilter(), turns) for _ in range(3)]
    asking = [await reading(s) for s in subscriptions]
    broadcaster.publish([event(1)])
    served = []
    for _ in range(3):
        done, _ = await asyncio.wait(asking, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
        [finished] = done
        index = asking.index(finished)
        served.append(index)
        asking[index] = await reading(subscriptions[index])  # gives the turn back
    for future in asking:
        future.cancel()
    assert served == [0, 1, 2]


async def test_a_reader_that_goes_away_gives_its_turn_to_the_next():
    broadcaster = Broadcaster()
    turns = Turns(1)
    leaving, staying = (broadcaster.subscribe(EventFilter(), turns) for _ in range(2))
    holding, waiting = await reading(leaving), await reading(staying)
    broadcaster.publish([event(1)])
    await asyncio.wait_for(holding, WAIT)
    broadcaster.unsubscribe(leaving)
    assert sequences(await asyncio.wait_for(waiting, WAIT)) == [1]


async def test_a_subscription_ended_in_line_is_passed_over():
    broadcaster = Broadcaster(buffer=1)
    turns = Turns(1)
    holder, lagging, next_in_line = (broadcaster.subscribe(EventFilter(), turns) for _ in range(3))
    holding = await reading(holder)
    lag = await reading(lagging)
    waiting = await reading(next_in_line)
    broadcaster.publish([event(1)])
    await asyncio.wait_for(holding, WAIT)
    broadcaster.publish([event(2)])  # overflows every one-event queue still in line
    with pytest.raises(Lagged):
        await asyncio.wait_for(lag, WAIT)
    with pytest.raises(Lagged):
        await asyncio.wait_for(waiting, WAIT)
    # The one turn is still the holder's, not lost to the ended ones: coming
    # back, it gets it again for the event queued meanwhile.
    again = await reading(holder)
    assert sequences(await asyncio.wait_for(again, WAIT)) == [2]


async def test_a_subscription_not_reading_yet_holds_no_turn():
    # A feed replaying from the log has not asked for live events yet: a turn
    # it held would idle.
    broadcaster = Broadcaster()
    turns = Turns(1)
    replaying = broadcaster.subscribe(EventFilter(), turns)
    live = broadcaster.subscribe(EventFilter(), turns)
    asking = await reading(live)
    broadcaster.publish([event(1)])
    assert sequences(await asyncio.wait_for(asking, WAIT)) == [1]
    later = await reading(replaying)  # replay done: now it asks, and waits its turn
    await reading(live)  # live has sent its batch
    assert sequences(await asyncio.wait_for(later, WAIT)) == [1]


async def test_a_turn_held_past_its_lease_goes_to_the_next_in_line():
    # The holder took its batch and never comes back: its send waits on a
    # client that does not read.
    broadcaster = Broadcaster()
    turns = Turns(1, lease_seconds=0.01)
    stalled, other = (broadcaster.subscribe(EventFilter(), turns) for _ in range(2))
    holding, waiting = await reading(stalled), await reading(other)
    broadcaster.publish([event(1)])
    await asyncio.wait_for(holding, WAIT)
    assert sequences(await asyncio.wait_for(waiting, WAIT)) == [1]
    assert turns.reclaimed_total == 1


async def test_a_holder_whose_lease_ended_asks_for_no_turn_until_its_reader_is_back():
    broadcaster = Broadcaster()
    turns = Turns(1, lease_seconds=0.01)
    stalled, other = (broadcaster.subscribe(EventFilter(), turns) for _ in range(2))
    holding, waiting = await reading(stalled), await reading(other)
    broadcaster.publish([event(1)])
    await asyncio.wait_for(holding, WAIT)
    await asyncio.wait_for(waiting, WAIT)  # the stalled one's turn, reclaimed
    broadcaster.publish([event(2)])  # queued for the stalled one, still sending
    # The turn is free for whoever asks next: the stalled one did not take it.
    again = await reading(other)
    assert turns.free == 0
    assert sequences(await asyncio.wait_for(again, WAIT)) == [2]
    back = await reading(stalled)  # its send completed at last: it asks, and gets a turn
    following = await reading(other)
    assert sequences(await asyncio.wait_for(back, WAIT)) == [2]
    following.cancel()


def test_a_lease_of_no_time_is_refused():
    with pytest.raises(ValueError, match="lease"):
        Turns(1, lease_seconds=0)
