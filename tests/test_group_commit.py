"""Group commit: writes queued together commit together, and fail alone."""

from __future__ import annotations

import asyncio

import pytest
from rigger_server import wire
from rigger_server.domain import EventDraft, EventType, Task, TaskStatus, now_rfc3339
from rigger_server.sqlite_store import SqliteStore
from rigger_server.store import TaskQuery
from rigger_server.writer import GroupWriter


def _task(title: str) -> Task:
    now = now_rfc3339()
    return Task(id=title, title=title, status=TaskStatus.TODO, created_at=now,
                updated_at=now, version=1)  # fmt: skip


@pytest.fixture
def store(tmp_path):
    store = SqliteStore(tmp_path / "tasks.db", wire.encode_event)
    yield store
    store.close()


async def test_a_failing_write_is_undone_alone_and_the_group_still_commits(store):
    published: list[int] = []

    def publish(events, then):
        published.extend(e.sequence for e in events)
        then()

    writer = GroupWriter(store, asyncio.get_running_loop(), publish)

    def add(title: str):
        task = _task(title)
        draft = EventDraft("e-" + title, task.created_at, EventType.CREATED, task)
        return title, store.insert_task(task, [draft])

    def add_then_fail(title: str):
        add(title)  # written inside the group's transaction...
        raise ValueError("refused")  # ...and undone with this write's savepoint

    results = await asyncio.gather(
        *(writer.submit(fn, f"t{i}") for i, fn in enumerate([add, add_then_fail, add] * 20)),
        return_exceptions=True,
    )
    await asyncio.sleep(0)  # let the publish callbacks run
    writer.close()

    failed = [r for r in results if isinstance(r, ValueError)]
    assert len(failed) == 20
    kept = {r for r in results if isinstance(r, str)}
    assert {t.id for t in store.list_tasks(TaskQuery())[0]} == kept
    assert published == list(range(1, 41))  # gapless: failed writes took no sequence
    assert [e.sequence for e in store.events_after(0, 100)] == published


async def test_callers_hear_back_only_after_the_commit(store):
    loop = asyncio.get_running_loop()
    writer = GroupWriter(store, loop, lambda events, then: then())

    def add():
        return None, store.insert_task(_task("a"), [])

    await writer.submit(add)
    # A second connection (another thread) sees the row: it was committed.
    assert await loop.run_in_executor(None, store.get_task, "a") is not None
    writer.close()
