"""Group commit: writes queued together commit together, and fail alone."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
from rigger_server.domain import Event
from rigger_server.sqlite_store import SqliteStore
from rigger_server.store import TaskQuery
from rigger_server.writer import GroupWriter

from unit.drafts import WAIT, created, new_task


class Published:
    """A publish callback that records each group's events, then answers its callers."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []

    def __call__(self, events: list[Event], then: Callable[[], None]) -> None:
        self.groups.append([e.sequence for e in events])
        then()

    @property
    def sequences(self) -> list[int]:
        return [s for group in self.groups for s in group]


@pytest.fixture
async def published() -> Published:
    return Published()


@pytest.fixture
async def writer(store, published):
    writer = GroupWriter(store, asyncio.get_running_loop(), published)
    yield writer
    writer.close()


def adder(store: SqliteStore) -> Callable[[str], tuple[str, list[Event]]]:
    """A write function adding a task titled (and identified by) its argument."""

    def add(title: str) -> tuple[str, list[Event]]:
        task = new_task(title)
        return task.id, store.insert_task(task, created(task))

    return add


async def test_a_failing_write_is_undone_alone_and_the_group_still_commits(
    store, writer, published
):
    add = adder(store)

    def add_then_fail(title: str):
        add(title)  # written inside the group's transaction...
        raise ValueError("refused")  # ...and undone with this write's savepoint

    results = await asyncio.gather(
        *(writer.submit(fn, f"t{i}") for i, fn in enumerate([add, add_then_fail, add] * 20)),
        return_exceptions=True,
    )
    failed = [r for r in results if isinstance(r, ValueError)]
    assert len(failed) == 20
    kept = {r for r in results if isinstance(r, str)}
    assert {t.id for t in store.list_tasks(TaskQuery())[0]} == kept
    assert published.sequences == list(range(1, 41))  # gapless: failed writes took no sequence
    assert [e.sequence for e in store.events_after(0, 100)] == published.sequences


async def test_writes_queued_during_a_commit_commit_together_in_submission_order(
    store, writer, published
):
    add = adder(store)
    running = threading.Event()
    release = threading.Event()

    def first(title: str):
        running.set()
        assert release.wait(WAIT)
        return add(title)

    blocker = writer.submit(first, "first")
    assert await asyncio.to_thread(running.wait, WAIT)
    queued = [writer.submit(add, f"queued {n}") for n in range(10)]
    release.set()
    await blocker
    ids = await asyncio.gather(*queued)
    assert published.groups == [[1], list(range(2, 12))]
    assert [e.task_id for e in store.events_after(1, 100)] == ids


async def test_callers_hear_back_only_after_the_commit(store, writer):
    loop = asyncio.get_running_loop()
    task_id = await writer.submit(adder(store), "a")
    # A second connection (another thread) sees the row: it was committed.
    assert await loop.run_in_executor(None, store.get_task, task_id) is not None


async def test_a_write_that_emits_nothing_is_answered_without_publishing(store, writer, published):
    assert await writer.submit(lambda: ("nothing", [])) == "nothing"
    assert published.groups == []


async def test_a_caller_that_went_away_does_not_stop_the_others_hearing_back(store, writer):
    add = adder(store)
    gone = writer.submit(add, "gone")
    gone.cancel()
    assert await writer.submit(add, "stays")
    assert len(store.list_tasks(TaskQuery())[0]) == 2  # the cancelled caller's write committed


async def test_closing_finishes_the_writes_already_queued(store, published):
    writer = GroupWriter(store, asyncio.get_running_loop(), published)
    futures = [writer.submit(adder(store), f"t{n}") for n in range(5)]
    await asyncio.to_thread(writer.close)
    assert len(await asyncio.gather(*futures)) == 5
