"""The single writer thread, with group commit.

Writes queue up while a commit is being synced to disk. The writer then runs
everything queued in one transaction — each write in its own savepoint, so a
write that fails is undone alone — and commits once: one fsync for the whole
group instead of one per write. Only after that commit are the group's events
published and its callers answered, in the order the writes ran, so
durability on acknowledgement and commit-order delivery are unchanged.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any

from rigger_server.domain import Event
from rigger_server.store import Store

MAX_GROUP = 256

_Job = tuple[asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]]
_Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]


class GroupWriter:
    """Runs write functions on one thread; each group of queued writes commits together."""

    def __init__(
        self,
        store: Store,
        loop: asyncio.AbstractEventLoop,
        publish: Callable[[list[Event]], None],
    ) -> None:
        self._store = store
        self._loop = loop
        self._publish = publish
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # Events the running group's writes produced; only the writer thread
        # touches this list.
        self._pending: list[Event] = []
        self._thread = threading.Thread(target=self._run, name="rigger-writer", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Queue `fn(*args)` for the writer thread; the future resolves after its commit."""
        future = self._loop.create_future()
        self._jobs.put((future, fn, args))
        return future

    def emit(self, events: list[Event]) -> None:
        """Called by a write function: publish these events once the group commits."""
        self._pending.extend(events)

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
        self._pending = []
        try:
            with self._store.atomic():
                for future, fn, args in group:
                    emitted = len(self._pending)
                    try:
                        with self._store.atomic():
                            outcomes.append((future, fn(*args), None))
                    except Exception as exc:
                        # Undone alone: its writes and its events. The caller
                        # gets the error; the rest of the group goes on.
                        del self._pending[emitted:]
                        outcomes.append((future, None, exc))
        except Exception as exc:
            # The commit itself failed: nothing in the group was written.
            self._pending = []
            outcomes = [(future, None, exc) for future, _, _ in group]
        events, self._pending = self._pending, []
        if events:
            self._loop.call_soon_threadsafe(self._publish, events)
        # Scheduled after the publish, so a caller that hears "done" and looks
        # finds its events already offered to every subscriber.
        self._loop.call_soon_threadsafe(_resolve, outcomes)


def _resolve(outcomes: list[_Outcome]) -> None:
    for future, result, exc in outcomes:
        if future.done():  # the caller went away
            continue
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)
