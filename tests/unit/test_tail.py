"""The log tail publishes the whole log in order, whoever wrote it, and answers writers after."""

from __future__ import annotations

import asyncio
import pathlib
import sqlite3
from collections.abc import AsyncIterator, Iterator

import pytest
from rigger_server import tail as tail_module
from rigger_server import wire
from rigger_server.events import Broadcaster, EventFilter, Subscription
from rigger_server.sqlite_store import SqliteStore
from rigger_server.tail import LogTail

from unit.drafts import WAIT, created, new_task, sequences


@pytest.fixture
def stores(tmp_path: pathlib.Path) -> Iterator[tuple[SqliteStore, SqliteStore]]:
    """Two stores on one file: this server's, and another process's."""
    ours = SqliteStore(tmp_path / "tasks.db", wire.encode_event)
    theirs = SqliteStore(tmp_path / "tasks.db", wire.encode_event)
    yield ours, theirs
    theirs.close()
    ours.close()


@pytest.fixture
def announced() -> list[int]:
    """What the tail announced to other servers."""
    return []


@pytest.fixture
async def tail(stores, broadcaster: Broadcaster, announced: list[int]) -> AsyncIterator[LogTail]:
    """A started tail on this server's store."""
    tail = LogTail(broadcaster, stores[0], announced.append)
    tail.start()
    yield tail
    await tail.close()


@pytest.fixture
def no_periodic_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tail reads the log only when told to: its timer never fires within a test."""
    monkeypatch.setattr(tail_module, "CHECK_SECONDS", 3600.0)


def insert(store: SqliteStore, title: str):
    task = new_task(title)
    return store.insert_task(task, created(task))


async def next_batch(subscription: Subscription):
    return await asyncio.wait_for(subscription.next_batch(), WAIT)


async def test_a_local_commit_that_follows_the_head_is_published_and_answered_at_once(
    stores, broadcaster, watch
):
    ours, _ = stores
    tail = LogTail(broadcaster, ours)
    answered: list[bool] = []
    tail.committed(insert(ours, "a"), lambda: answered.append(True))
    assert answered == [True]
    assert sequences(await next_batch(watch)) == [1]


async def test_each_local_commit_is_announced_to_the_other_servers(stores, tail, announced):
    ours, _ = stores
    tail.committed(insert(ours, "a"), lambda: None)
    tail.committed(insert(ours, "b"), lambda: None)
    assert announced == [1, 2]


async def test_a_local_commit_behind_another_processs_is_answered_only_after_both_are_published(
    stores, tail, broadcaster, watch, no_periodic_check
):
    ours, theirs = stores
    insert(theirs, "theirs")  # sequence 1, not announced
    answered = asyncio.Event()
    tail.committed(insert(ours, "ours"), answered.set)  # sequence 2
    assert not answered.is_set()
    await asyncio.wait_for(answered.wait(), WAIT)
    assert broadcaster.head == 2
    assert sequences(await next_batch(watch)) == [1, 2]


async def test_another_processs_commit_is_published_when_announced(
    stores, tail, watch, no_periodic_check
):
    _, theirs = stores
    [event] = insert(theirs, "theirs")
    tail.seen(event.sequence)
    [published] = await next_batch(watch)
    assert published.payload == event.payload  # the bytes as the log keeps them


async def test_another_processs_commit_is_found_by_the_periodic_check_without_an_announcement(
    stores, broadcaster, watch, monkeypatch
):
    monkeypatch.setattr(tail_module, "CHECK_SECONDS", 0.01)
    _, theirs = stores
    tail = LogTail(broadcaster, stores[0])
    tail.start()
    try:
        insert(theirs, "theirs")
        assert sequences(await next_batch(watch)) == [1]
    finally:
        await tail.close()


async def test_a_long_backlog_is_published_in_order_page_by_page(
    stores, tail, watch, no_periodic_check
):
    _, theirs = stores
    for n in range(tail_module.PAGE + 20):
        insert(theirs, f"t{n}")
    tail.seen(tail_module.PAGE + 20)
    received: list[int] = []
    while len(received) < tail_module.PAGE + 20:
        received.extend(sequences(await next_batch(watch)))
    assert received == list(range(1, tail_module.PAGE + 21))


async def test_a_local_commit_the_tail_already_read_back_is_answered_at_once(
    stores, tail, broadcaster, watch, no_periodic_check
):
    ours, _ = stores
    events = insert(ours, "ours")
    tail.seen(events[-1].sequence)  # announced back before the writer reported it
    await next_batch(watch)
    answered: list[bool] = []
    tail.committed(events, lambda: answered.append(True))
    assert answered == [True]
    assert broadcaster.head == 1


async def test_closing_answers_the_writers_still_waiting_to_be_published(
    stores, broadcaster, no_periodic_check
):
    ours, theirs = stores
    tail = LogTail(broadcaster, ours)
    insert(theirs, "theirs")
    answered: list[bool] = []
    tail.committed(insert(ours, "ours"), lambda: answered.append(True))
    assert answered == []
    await tail.close()
    assert answered == [True]  # committed, so durable, though never published


async def test_after_closing_a_commit_is_answered_without_being_published(
    stores, broadcaster, watch
):
    ours, _ = stores
    tail = LogTail(broadcaster, ours)
    await tail.close()
    answered: list[bool] = []
    tail.committed(insert(ours, "late"), lambda: answered.append(True))
    assert answered == [True]
    assert broadcaster.head == 0


async def test_the_tail_starts_from_the_broadcasters_head(stores, no_periodic_check):
    ours, theirs = stores
    insert(ours, "before")
    broadcaster = Broadcaster(head=ours.last_sequence())
    subscription = broadcaster.subscribe(EventFilter())
    tail = LogTail(broadcaster, ours)
    tail.start()
    try:
        insert(theirs, "after")
        tail.seen(2)
        assert sequences(await next_batch(subscription)) == [2]
    finally:
        await tail.close()


class FailingOnce:
    """A store whose next log read fails, as while it closes or the disk has trouble."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.failures = 1

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    def events_after(self, sequence: int, limit: int, max_bytes: int | None = None):
        if self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("disk I/O error")
        return self._store.events_after(sequence, limit, max_bytes)


async def test_a_failed_read_of_the_log_is_logged_and_tried_again(
    stores, broadcaster, watch, monkeypatch, caplog
):
    monkeypatch.setattr(tail_module, "CHECK_SECONDS", 0.01)
    ours, theirs = stores
    flaky = FailingOnce(ours)
    tail = LogTail(broadcaster, flaky)  # type: ignore[arg-type]
    tail.start()
    try:
        [event] = insert(theirs, "theirs")
        tail.seen(event.sequence)
        assert sequences(await next_batch(watch)) == [1]
    finally:
        await tail.close()
    assert flaky.failures == 0
    assert "reading the event log failed" in caplog.text


class RecordingPages:
    """A store that remembers the payload bytes of every page of the log it was asked for."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.pages: list[int] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    def events_after(self, sequence: int, limit: int, max_bytes: int | None = None):
        page = self._store.events_after(sequence, limit, max_bytes)
        self.pages.append(sum(len(e.payload) for e in page[:-1]))
        return page


async def test_another_processs_events_are_read_back_in_pages_within_the_byte_budget(
    stores, no_periodic_check
):
    broadcaster = Broadcaster(buffer_bytes=5000)
    ours, theirs = stores
    for n in range(30):
        insert(theirs, f"{n} " + "x" * 1000)
    recording = RecordingPages(ours)
    tail = LogTail(broadcaster, recording)  # type: ignore[arg-type]
    tail.start()
    try:
        await asyncio.wait_for(tail.reach(30), WAIT)
    finally:
        await tail.close()
    assert broadcaster.head == 30
    assert len(recording.pages) > 5
    assert max(recording.pages) < 5000
