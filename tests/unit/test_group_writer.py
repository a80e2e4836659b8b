"""Group commit: writes queued together commit together, and fail alone."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
from rigger_server.domain import Event
from rigger_server.errors import Unauthenticated
from rigger_server.sqlite_store import SqliteStore
from rigger_server.store import TaskQuery
from rigger_server.writer import COMMITTED, Committed, GroupWriter

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


class Revocable:
    """A write's check that passes until revoked, then raises Unauthenticated."""

    def __init__(self) -> None:
        self.revoked = False

    def __call__(self) -> None:
        if self.revoked:
            raise Unauthenticated("revoked")


def counting(add: Callable[[str], tuple[str, list[Event]]], runs: list[str]):
    def run(title: str) -> tuple[str, list[Event]]:
        runs.append(title)
        return add(title)

    return run


async def test_a_write_whose_check_fails_before_it_runs_is_never_run(store, writer, published):
    runs: list[str] = []
    check = Revocable()
    check.revoked = True
    with pytest.raises(Unauthenticated):
        await writer.submit(counting(adder(store), runs), "refused", check=check)
    assert runs == []
    assert store.list_tasks(TaskQuery())[0] == []
    assert published.groups == []


async def test_a_write_that_outlasts_its_own_check_is_undone_alone(store, writer, published):
    add = adder(store)
    check = Revocable()
    runs: list[str] = []

    def slow(title: str):
        result = add(title)
        check.revoked = True  # e.g. its deadline passed while it ran
        return result

    results = await asyncio.gather(
        writer.submit(counting(add, runs), "before"),
        writer.submit(slow, "refused", check=check),
        writer.submit(counting(add, runs), "after"),
        return_exceptions=True,
    )
    assert isinstance(results[1], Unauthenticated)
    titles = sorted(t.title for t in store.list_tasks(TaskQuery())[0])
    assert titles == ["after", "before"]
    assert runs == ["before", "after"]  # nobody ran twice: the savepoint undid it alone
    assert published.sequences == [1, 2]


async def test_a_write_refused_right_before_the_commit_is_not_committed_and_the_rest_is(
    store, writer, published
):
    add = adder(store)
    check = Revocable()
    runs: list[str] = []
    running = threading.Event()
    release = threading.Event()

    def blocker(title: str):
        running.set()
        assert release.wait(WAIT)
        return add(title)

    def revoking(title: str):
        # Runs after the guarded write passed its own checks, in the same group.
        check.revoked = True
        return counting(add, runs)(title)

    first = writer.submit(blocker, "first")
    assert await asyncio.to_thread(running.wait, WAIT)
    queued = [
        writer.submit(counting(add, runs), "kept 1"),
        writer.submit(counting(add, runs), "refused", check=check),
        writer.submit(revoking, "kept 2"),
    ]
    release.set()
    await first
    results = await asyncio.gather(*queued, return_exceptions=True)
    assert isinstance(results[1], Unauthenticated)
    titles = sorted(t.title for t in store.list_tasks(TaskQuery())[0])
    assert titles == ["first", "kept 1", "kept 2"]
    # The group was rolled back whole, and each other write ran again alone.
    assert runs == ["kept 1", "refused", "kept 2", "kept 1", "kept 2"]
    assert published.sequences == [1, 2, 3]  # gapless: the refused write took no sequence
    assert [e.sequence for e in store.events_after(0, 100)] == [1, 2, 3]


async def test_a_write_refused_when_it_runs_again_alone_undoes_only_itself(
    store, writer, published
):
    add = adder(store)
    checks = [Revocable(), Revocable()]
    running = threading.Event()
    release = threading.Event()
    revocations = iter(checks)

    def blocker(title: str):
        running.set()
        assert release.wait(WAIT)
        return add(title)

    def revoker(title: str):
        # In the group it revokes the first check; run again alone, the second.
        next(revocations).revoked = True
        return add(title)

    first = writer.submit(blocker, "first")
    assert await asyncio.to_thread(running.wait, WAIT)
    queued = [
        writer.submit(add, "refused in the group", check=checks[0]),
        writer.submit(revoker, "revoker"),
        writer.submit(add, "refused alone", check=checks[1]),
        writer.submit(add, "last"),
    ]
    release.set()
    await first
    results = await asyncio.gather(*queued, return_exceptions=True)
    assert isinstance(results[0], Unauthenticated)
    assert isinstance(results[2], Unauthenticated)
    titles = sorted(t.title for t in store.list_tasks(TaskQuery())[0])
    assert titles == ["first", "last", "revoker"]
    assert published.sequences == [1, 2, 3]


async def test_the_commit_observer_hears_each_group_s_commit_and_its_event_count(store, published):
    heard: list[tuple[float, int]] = []
    writer = GroupWriter(
        store, asyncio.get_running_loop(), published, lambda s, n: heard.append((s, n))
    )
    try:
        add = adder(store)
        await asyncio.gather(*(writer.submit(add, f"t{i}") for i in range(10)))
    finally:
        writer.close()
    assert sum(count for _, count in heard) == 10
    assert len(heard) == len(published.groups)
    assert all(seconds >= 0 for seconds, _ in heard)


async def test_a_call_s_committed_sequences_are_collected_in_its_context(store, writer):
    add = adder(store)

    async def call(title: str) -> Committed:
        committed = Committed()
        COMMITTED.set(committed)  # each task runs in a context of its own
        await writer.submit(add, title)
        await writer.submit(add, f"{title} again")
        return committed

    def fails(title: str):
        raise ValueError(title)

    async def failing_call() -> Committed:
        committed = Committed()
        COMMITTED.set(committed)
        with pytest.raises(ValueError):
            await writer.submit(fails, "no")
        return committed

    first, second, failed = await asyncio.gather(call("a"), call("b"), failing_call())
    assert first.count == second.count == 2
    assert {first.first, first.last, second.first, second.last} == {1, 2, 3, 4}
    assert first.first < first.last and second.first < second.last
    assert failed.count == 0 and failed.first is None
