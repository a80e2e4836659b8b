"""The single writer thread, with group commit.

Writes queue up while a commit is being synced to disk. The writer then runs
everything queued in one transaction — each write in its own savepoint, so a
write that fails is undone alone — and commits once: one fsync for the whole
group instead of one per write. Only after that commit are the group's events
published and its callers answered, in the order the writes ran, so
durability on acknowledgement and commit-order delivery are unchanged.

Write functions return their result together with the events they committed;
the writer collects them, so nothing flows back from the domain into it.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
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

_Job = tuple[asyncio.Future[Any], Callable[..., Written[Any]], tuple[Any, ...]]
_Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]


class GroupWriter:
    """Runs write functions on one thread; each group of queued writes commits together."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop, publish: Publish) -> None:
        self._store = store
        self._loop = loop
        self._publish = publish
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="rigger-writer", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Written[T]], *args: Any) -> asyncio.Future[T]:
        """Queue `fn(*args)` for the writer thread.

        `fn` runs inside the group's transaction and returns (result, events).
        The future resolves to the result once the group has committed and
        its events are published.
        """
        future: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put((future, fn, args))
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
        outcomes: list[_Outcome] = []
        events: list[Event] = []
        try:
            with self._store.atomic():
                for future, fn, args in group:
                    try:
                        with self._store.atomic():
                            result, emitted = fn(*args)
                    except Exception as exc:
                        # Undone alone: its writes, and its events were never
                        # collected. The caller gets the error; the rest of
                        # the group goes on.
                        outcomes.append((future, None, exc))
                        continue
                    events.extend(emitted)
                    outcomes.append((future, result, None))
        except Exception as exc:
            # The commit itself failed: nothing in the group was written.
            events = []
            outcomes = [(future, None, exc) for future, _, _ in group]
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
    for future, result, exc in outcomes:
        if future.done():  # the caller went away
            continue
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)
