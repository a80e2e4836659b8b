"""The single writer thread, with group commit.

Writes queue up while a commit is being synced to disk. The writer then runs
everything queued in one transaction — each write in its own savepoint, so a
write that fails is undone alone — and commits once: one fsync for the whole
group instead of one per write. Only after that commit are the group's events
published and its callers answered, in the order the writes ran, so
durability on acknowledgement and commit-order delivery are unchanged.

Write functions return their result together with the events they committed;
the writer collects them, so nothing flows back from the domain into it.

A write may carry a check (its caller's deadline and token, `guard.py`): a
condition on applying it, which raises when it no longer holds. The writer
runs the check before the write, after it inside its savepoint (so a write
that outlasted its own deadline is undone alone), and for every write of the
group once more inside the transaction right before it commits. A write
whose check fails there cannot be undone alone — the savepoints are
released — so the whole transaction is rolled back, the refused writes are
answered with their check's error, and every other write of the group runs
again in a transaction of its own. Alone, a write refused late undoes only
itself: no write runs more than twice, however the checks fall.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from rigger_server.domain import Event
from rigger_server.store import Store

MAX_GROUP = 256

T = TypeVar("T")
# What a write function returns: its result and the events it committed.
Written = tuple[T, list[Event]]
# Publishes a committed group's events in order, then calls the callback once
# they are published (the writer answers the group's callers from there).
Publish = Callable[[list[Event], Callable[[], None]], None]

# Raises when a write must not be applied now (e.g. its caller's deadline passed).
Check = Callable[[], None]

# Told, on the writer thread, how long each group's COMMIT (with its fsync)
# took and how many events it committed; the server feeds its metrics.
CommitObserver = Callable[[float, int], None]


@dataclasses.dataclass(slots=True)
class Committed:
    """What one call's writes committed: the first and last sequence, and how many events."""

    first: int | None = None
    last: int | None = None
    count: int = 0

    def add(self, events: Iterable[Event]) -> None:
        """Count `events`, committed in sequence order."""
        for event in events:
            if self.first is None:
                self.first = event.sequence
            self.last = event.sequence
            self.count += 1


# Set around a call by whoever wants to know what it committed (the server's
# call log): every write submitted in that context adds its committed events
# here once it is answered.
COMMITTED: contextvars.ContextVar[Committed | None] = contextvars.ContextVar(
    "rigger_committed", default=None
)


@dataclasses.dataclass(frozen=True, slots=True)
class _Job:
    future: asyncio.Future[Any]
    fn: Callable[..., Written[Any]]
    args: tuple[Any, ...]
    check: Check | None
    committed: Committed | None


# A write's job, its result or error, and the events it committed.
_Outcome = tuple[_Job, Any, BaseException | None, list[Event]]


class _RefusedAtCommit(Exception):
    """Checks that failed right before the commit, by the index of their write in the group."""

    def __init__(self, errors: dict[int, Exception]) -> None:
        super().__init__(f"{len(errors)} write(s) refused at commit")
        self.errors = errors


class GroupWriter:
    """Runs write functions on one thread; each group of queued writes commits together."""

    def __init__(
        self,
        store: Store,
        loop: asyncio.AbstractEventLoop,
        publish: Publish,
        observe_commit: CommitObserver | None = None,
    ) -> None:
        self._store = store
        self._loop = loop
        self._publish = publish
        self._observe_commit = observe_commit
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="rigger-writer", daemon=True)
        self._thread.start()

    def submit(
        self, fn: Callable[..., Written[T]], *args: Any, check: Check | None = None
    ) -> asyncio.Future[T]:
        """Queue `fn(*args)` for the writer thread.

        `fn` runs inside the group's transaction and returns (result, events).
        The future resolves to the result once the group has committed and
        its events are published. With `check`, the write commits only if
        `check()` still passes right before the commit; otherwise the future
        gets its error and nothing of the write is kept.
        """
        future: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put(_Job(future, fn, args, check, COMMITTED.get()))
        return future

    def close(self) -> None:
        """Finish the queued writes, then stop the thread (blocking)."""
        self._jobs.put(None)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._jobs.get()
            if first is None:
                return
            group = [first]
            while len(group) < MAX_GROUP:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                group.append(job)
            self._commit(group)

    def _commit(self, group: list[_Job]) -> None:
        try:
            events, outcomes = self._transaction(group)
        except _RefusedAtCommit as refused:
            # Nothing of the group was written (see the module docstring).
            self._answer([], [(group[i], None, e, []) for i, e in refused.errors.items()])
            for index, job in enumerate(group):
                if index not in refused.errors:
                    self._commit_alone(job)
            return
        self._answer(events, outcomes)

    def _commit_alone(self, job: _Job) -> None:
        try:
            events, outcomes = self._transaction([job])
        except _RefusedAtCommit as refused:
            events, outcomes = [], [(job, None, refused.errors[0], [])]
        self._answer(events, outcomes)

    def _transaction(self, group: list[_Job]) -> tuple[list[Event], list[_Outcome]]:
        outcomes: list[_Outcome] = []
        events: list[Event] = []
        applied: list[int] = []

        def before_commit() -> None:
            # The last thing before COMMIT: a write whose caller gave up or
            # lost its token while the group ran is not committed.
            refused: dict[int, Exception] = {}
            for index in applied:
                check = group[index].check
                if check is None:
                    continue
                try:
                    check()
                except Exception as exc:
                    refused[index] = exc
            if refused:
                raise _RefusedAtCommit(refused)

        body_done = 0.0
        try:
            with self._store.atomic(before_commit=before_commit):
                for index, job in enumerate(group):
                    try:
                        if job.check is not None:
                            job.check()  # refused before any work
                        with self._store.atomic():
                            result, emitted = job.fn(*job.args)
                            if job.check is not None:
                                job.check()  # outlasted itself: undone alone
                    except Exception as exc:
                        # Undone alone: its writes, and its events were never
                        # collected. The caller gets the error; the rest of
                        # the group goes on.
                        outcomes.append((job, None, exc, []))
                        continue
                    applied.append(index)
                    events.extend(emitted)
                    outcomes.append((job, result, None, emitted))
                body_done = time.perf_counter()
        except _RefusedAtCommit:
            raise
        except Exception as exc:
            # The commit itself failed: nothing in the group was written.
            return [], [(job, None, exc, []) for job in group]
        if self._observe_commit is not None:
            # What remained after the last write: the checks and the COMMIT.
            self._observe_commit(time.perf_counter() - body_done, len(events))
        return events, outcomes

    def _answer(self, events: list[Event], outcomes: list[_Outcome]) -> None:
        self._loop.call_soon_threadsafe(self._deliver, events, outcomes)

    def _deliver(self, events: list[Event], outcomes: list[_Outcome]) -> None:
        # On the loop. Callers hear back only once their events are published,
        # so a caller that hears "done" and looks finds them offered to every
        # subscriber.
        if events:
            self._publish(events, lambda: _resolve(outcomes))
        else:
            _resolve(outcomes)


def _resolve(outcomes: list[_Outcome]) -> None:
    for job, result, exc, emitted in outcomes:
        if exc is None and job.committed is not None:
            job.committed.add(emitted)
        future = job.future
        if future.done():  # the caller went away
            continue
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)
