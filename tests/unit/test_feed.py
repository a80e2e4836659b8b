"""Feed, in process: a subscriber's replay from the log, then live events, gapless."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator

import pytest
from rigger_server import wire
from rigger_server.domain import Event, EventType
from rigger_server.events import Broadcaster, Closed, EventFilter, Lagged, LaggedBytes, Turns
from rigger_server.feed import REPLAY_PAGE, Feed
from rigger_server.sqlite_store import SqliteStore
from rigger_server.tasks import NewTask, TaskBook, TaskChange

from unit.drafts import WAIT, decoded, sequences

EVERYTHING = EventFilter()


@contextlib.asynccontextmanager
async def book_with(
    db: pathlib.Path, buffer: int = 1000, buffer_bytes: int = 64 << 20
) -> AsyncIterator[TaskBook]:
    """A TaskBook whose subscribers may fall `buffer` events (`buffer_bytes` bytes) behind."""
    broadcaster = Broadcaster(buffer=buffer, buffer_bytes=buffer_bytes)
    book = TaskBook(SqliteStore(db, wire.encode_event), broadcaster, db.parent)
    try:
        yield book
    finally:
        await book.close()


async def add_many(book: TaskBook, count: int, start: int = 0) -> None:
    """Add `count` tasks, 25 at a time (so the writer commits them in groups)."""
    for chunk in range(start, start + count, 25):
        await asyncio.gather(
            *(book.add_task(NewTask(f"t{i}")) for i in range(chunk, min(chunk + 25, start + count)))
        )


async def read(batches: AsyncIterator[list[Event]], count: int) -> list[Event]:
    """The next batches of a feed, flattened, until at least `count` events arrived."""

    async def take() -> list[Event]:
        events: list[Event] = []
        while len(events) < count:
            events.extend(await anext(batches))
        return events

    return await asyncio.wait_for(take(), WAIT)


async def test_a_live_feed_starts_at_the_head_and_delivers_only_later_events(book):
    await add_many(book, 3)
    feed = book.open_feed(EVERYTHING, None)
    batches = feed.batches()
    assert feed.head == 3
    later = await book.add_task(NewTask("later"))
    [event] = decoded(await read(batches, 1))
    assert (event.sequence, event.task.id) == (4, later.id)


async def test_a_replaying_feed_delivers_the_events_after_its_sequence_then_live_ones(book):
    await add_many(book, 5)
    feed = book.open_feed(EVERYTHING, 3)
    batches = feed.batches()
    replayed = await read(batches, 2)
    await book.add_task(NewTask("live"))
    live = await read(batches, 1)
    assert sequences(replayed) == [4, 5]
    assert sequences(live) == [6]


async def test_replay_hands_over_to_live_without_gap_or_duplicate_across_pages(book):
    total = REPLAY_PAGE + 100  # more than one page, half written before the feed opens
    await add_many(book, total // 2)
    batches = book.open_feed(EVERYTHING, 0).batches()
    writing = asyncio.ensure_future(add_many(book, total - total // 2, start=total // 2))
    try:
        events = await read(batches, total)
        await writing
    finally:
        writing.cancel()
    assert sequences(events) == list(range(1, total + 1))


async def test_replaying_feeds_opened_while_writes_go_on_each_see_the_log_once(book):
    total = 200
    feeds: list[Feed] = []

    async def open_meanwhile() -> None:
        for _ in range(4):
            feeds.append(book.open_feed(EVERYTHING, 0))
            await book.add_task(NewTask("from the subscriber side"))

    await asyncio.gather(add_many(book, total - 4), open_meanwhile())
    seen = await asyncio.gather(*(read(feed.batches(), total) for feed in feeds))
    for events in seen:
        assert sequences(events) == list(range(1, total + 1))


async def test_replay_applies_the_filter(book):
    alices = await book.add_task(NewTask("a", assignee="alice"))
    await book.add_task(NewTask("b", assignee="bob"))
    await book.update_task(TaskChange(alices.id, assignee="carol"))
    await book.update_task(TaskChange(alices.id, assignee="alice"))
    wanted = EventFilter(frozenset({EventType.CREATED, EventType.ASSIGNED}), "alice")
    events = decoded(await read(book.open_feed(wanted, 0).batches(), 2))
    assert [(e.sequence, e.event_type) for e in events] == [(1, 1), (6, 5)]
    assert events[1].metadata["previous_assignee"] == "carol"


async def test_replayed_events_are_the_bytes_live_subscribers_received(book):
    live = book.open_feed(EVERYTHING, None)
    parent = await book.add_task(NewTask("parent", assignee="alice", due_date="2025-03-04"))
    await book.add_task(NewTask("child", parent_task_id=parent.id, source_prd_id="prd-1"))
    await book.update_task(TaskChange(parent.id, status=2, assignee="bob"))
    await book.delete_task(parent.id)
    received = await read(live.batches(), 6)
    replayed = await read(book.open_feed(EVERYTHING, 0).batches(), 6)
    assert [e.payload for e in replayed] == [e.payload for e in received]


async def test_live_events_that_overflow_the_queue_during_replay_are_replayed_from_the_log(db):
    async with book_with(db, buffer=5) as book:
        await add_many(book, 20)
        batches = book.open_feed(EVERYTHING, 0).batches()
        # Published before the replay has read anything: more than the queue holds.
        await add_many(book, 10, start=20)
        events = await read(batches, 30)
        await book.add_task(NewTask("live"))
        [last] = await read(batches, 1)
    assert sequences(events) == list(range(1, 31))
    assert last.sequence == 31
    assert book.broadcaster.subscriber_count == 1


async def test_live_events_that_outgrow_the_byte_budget_during_replay_are_replayed_from_the_log(
    db,
):
    async with book_with(db, buffer_bytes=1000) as book:  # some ten events' worth
        await add_many(book, 20)
        batches = book.open_feed(EVERYTHING, 0).batches()
        await add_many(book, 30, start=20)  # published before the replay has read anything
        events = await read(batches, 50)
        await book.add_task(NewTask("live"))
        [last] = await read(batches, 1)
    assert sequences(events) == list(range(1, 51))
    assert last.sequence == 51
    assert book.broadcaster.lagged_total >= 1
    assert book.broadcaster.subscriber_count == 1


async def test_replay_pages_hold_the_byte_budget_and_hand_over_to_live_without_gap(db):
    async with book_with(db, buffer_bytes=1000) as book:  # some ten events a page
        await add_many(book, 60)
        feed = book.open_feed(EVERYTHING, 0)
        pages = [await asyncio.wait_for(feed.next_batch(), WAIT)]
        await add_many(book, 5, start=60)  # while replay goes on: live, after the head
        while sum(len(page) for page in pages) < 65:
            pages.append(await asyncio.wait_for(feed.next_batch(), WAIT))
        feed.close()
    assert sequences([e for page in pages for e in page]) == list(range(1, 66))
    assert len(pages) > 6
    for page in pages:
        assert sum(len(e.payload) for e in page[:-1]) < 1000


async def test_a_live_feed_whose_events_outgrow_its_byte_budget_ends_lagged(db):
    async with book_with(db, buffer_bytes=1000) as book:
        batches = book.open_feed(EVERYTHING, None).batches()
        await add_many(book, 25)  # published together, while nobody reads
        with pytest.raises(LaggedBytes):
            await read(batches, 25)


async def test_a_live_feed_that_falls_behind_its_buffer_ends_lagged(db):
    async with book_with(db, buffer=5) as book:
        batches = book.open_feed(EVERYTHING, None).batches()
        await add_many(book, 10)  # published together, while nobody reads
        with pytest.raises(Lagged):
            await read(batches, 10)


async def test_a_reader_that_resumes_after_every_lag_receives_the_whole_log_once(db):
    total = 300
    async with book_with(db, buffer=5) as book:
        writing = asyncio.ensure_future(add_many(book, total))
        received: list[int] = []
        try:
            while not received or received[-1] < total:
                feed = book.open_feed(EVERYTHING, received[-1] if received else 0)
                try:
                    async for batch in feed.batches():
                        received.extend(sequences(batch))
                        if received[-1] >= total:
                            break
                except Lagged:
                    pass
                finally:
                    feed.close()
            await writing
        finally:
            writing.cancel()
    assert received == list(range(1, total + 1))


async def test_a_feed_ends_closed_when_the_broadcaster_closes(book):
    batches = book.open_feed(EVERYTHING, None).batches()
    book.broadcaster.close()
    with pytest.raises(Closed):
        await read(batches, 1)


async def test_closing_a_feed_unregisters_it_and_may_be_done_twice(book):
    feed = book.open_feed(EVERYTHING, None)
    assert book.broadcaster.subscriber_count == 1
    feed.close()
    feed.close()
    assert book.broadcaster.subscriber_count == 0


async def test_feeds_taking_turns_wait_for_a_turn_and_take_everything_queued_meanwhile(book):
    turns = Turns(1)
    first = book.open_feed(EVERYTHING, None, turns).batches()
    second = book.open_feed(EVERYTHING, None, turns).batches()
    await book.add_task(NewTask("one"))
    assert sequences(await read(first, 1)) == [1]  # first holds the turn until it asks again
    waiting = asyncio.ensure_future(anext(second))
    await book.add_task(NewTask("two"))
    await book.add_task(NewTask("three"))
    assert not waiting.done()
    asking_again = asyncio.ensure_future(anext(first))  # sent: first gives the turn back
    try:
        assert sequences(await asyncio.wait_for(waiting, WAIT)) == [1, 2, 3]
    finally:
        asking_again.cancel()
        await asyncio.gather(asking_again, return_exceptions=True)


async def test_a_feed_without_turns_takes_each_batch_as_it_comes(book):
    batches = book.open_feed(EVERYTHING, None).batches()
    await book.add_task(NewTask("one"))
    first = await read(batches, 1)
    await book.add_task(NewTask("two"))
    assert (sequences(first), sequences(await read(batches, 1))) == ([1], [2])
