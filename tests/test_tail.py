"""The log tail publishes the whole log in order, whoever wrote it, and answers writers after."""

from __future__ import annotations

import asyncio
import pathlib
import uuid
from collections.abc import Iterator

import pytest
from rigger_server import wire
from rigger_server.domain import EventDraft, EventType, Task, TaskStatus, now_rfc3339
from rigger_server.events import Broadcaster, EventFilter
from rigger_server.sqlite_store import SqliteStore
from rigger_server.tail import LogTail


def _created(title: str) -> tuple[Task, list[EventDraft]]:
    now = now_rfc3339()
    task = Task(str(uuid.uuid4()), title, TaskStatus.TODO, now, now, version=1)
    return task, [EventDraft(str(uuid.uuid4()), now, EventType.CREATED, task)]


@pytest.fixture
def stores(tmp_path: pathlib.Path) -> Iterator[tuple[SqliteStore, SqliteStore]]:
    """Two stores on one file: this server's, and another process's."""
    ours = SqliteStore(tmp_path / "tasks.db", wire.encode_event)
    theirs = SqliteStore(tmp_path / "tasks.db", wire.encode_event)
    yield ours, theirs
    theirs.close()
    ours.close()


async def test_a_local_commit_that_follows_the_head_is_published_and_answered_at_once(stores):
    ours, _ = stores
    broadcaster = Broadcaster()
    subscription = broadcaster.subscribe(EventFilter())
    tail = LogTail(broadcaster, ours)
    answered: list[bool] = []
    tail.committed(ours.insert_task(*_created("a")), lambda: answered.append(True))
    assert answered == [True]
    assert [e.sequence for e in await subscription.next_batch()] == [1]


async def test_a_local_commit_behind_another_processs_is_answered_only_after_both_are_published(
    stores,
):
    ours, theirs = stores
    broadcaster = Broadcaster()
    subscription = broadcaster.subscribe(EventFilter())
    tail = LogTail(broadcaster, ours)
    tail.start()
    try:
        theirs.insert_task(*_created("theirs"))  # sequence 1, not announced yet
        answered = asyncio.Event()
        tail.committed(ours.insert_task(*_created("ours")), answered.set)  # sequence 2
        assert not answered.is_set()
        await asyncio.wait_for(answered.wait(), 5)
        assert broadcaster.head == 2
        assert [e.sequence for e in await subscription.next_batch()] == [1, 2]
    finally:
        await tail.close()


async def test_another_processs_commit_is_published_when_announced(stores):
    ours, theirs = stores
    broadcaster = Broadcaster()
    subscription = broadcaster.subscribe(EventFilter())
    tail = LogTail(broadcaster, ours)
    tail.start()
    try:
        [event] = theirs.insert_task(*_created("theirs"))
        tail.seen(event.sequence)
        [published] = await asyncio.wait_for(subscription.next_batch(), 5)
        assert published.payload == event.payload  # the bytes as the log keeps them
    finally:
        await tail.close()


async def test_another_processs_commit_is_found_without_an_announcement(stores):
    ours, theirs = stores
    broadcaster = Broadcaster()
    subscription = broadcaster.subscribe(EventFilter())
    tail = LogTail(broadcaster, ours)
    tail.start()
    try:
        theirs.insert_task(*_created("theirs"))
        batch = await asyncio.wait_for(subscription.next_batch(), 5)
        assert [e.sequence for e in batch] == [1]
    finally:
        await tail.close()
