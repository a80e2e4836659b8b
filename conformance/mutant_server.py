"""A deliberately broken Rigger server, for the suite's self-test. Never part of the product.

    python -m conformance.mutant_server --mutant NAME grpc --port 0 --db PATH

patches one behaviour of the real server's classes at runtime, then hands the
rest of the command line to `rig` (rigger_server.cli.main). Each mutant breaks
one promise of the contract; the self-test requires the suite to notice.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import pathlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from rigger_server import cli, events, service, sqlite_store, tasks
from rigger_server.domain import Event, EventDraft, EventType, Task
from rigger_server.errors import NotFound, RiggerError
from rigger_server.store import TaskQuery


def _patch(owner: object, name: str, replacement: object) -> None:
    # Plain setattr: the point is to replace the real server's behaviour in
    # this process only, without the product knowing about mutants.
    setattr(owner, name, replacement)


def no_status_changed() -> None:
    """UpdateTask never emits STATUS_CHANGED (neither live nor in the log)."""
    original = sqlite_store.SqliteStore.replace_task

    def replace_task(
        self: sqlite_store.SqliteStore, task: Task, expected: int, drafts: Sequence[EventDraft]
    ) -> list[Event]:
        kept = [d for d in drafts if d.event_type is not EventType.STATUS_CHANGED]
        return list(original(self, task, expected, kept))

    _patch(sqlite_store.SqliteStore, "replace_task", replace_task)


def internal_on_unknown_id() -> None:
    """An unknown task id answers INTERNAL instead of NOT_FOUND."""
    original = service.status_of

    def status_of(exc: RiggerError) -> Any:
        if isinstance(exc, NotFound) and str(exc).startswith("task "):
            return grpc.StatusCode.INTERNAL
        return original(exc)

    _patch(service, "status_of", status_of)


def drop_every_tenth() -> None:
    """Every tenth event is committed but never reaches the live subscribers' queues."""
    original = events.Subscription.offer
    counter = itertools.count(1)

    # Dropped at the queue, past the log tail: a tail re-reading the log would
    # otherwise heal a drop made in Broadcaster.publish.
    def offer(self: events.Subscription, event: Event) -> bool:
        if next(counter) % 10 == 0:
            return True
        return original(self, event)

    _patch(events.Subscription, "offer", offer)


def ignore_assignee_filter() -> None:
    """Subscriptions filter by event type only; assignee_filter is ignored."""

    def matches(self: events.EventFilter, event: Event) -> bool:
        return not self.event_types or event.event_type in self.event_types

    _patch(events.EventFilter, "matches", matches)


def replay_skips_first() -> None:
    """after_sequence replay starts one event late: the first stored event is lost."""
    original = sqlite_store.SqliteStore.events_after

    def events_after(self: sqlite_store.SqliteStore, sequence: int, limit: int) -> list[Event]:
        return list(original(self, sequence + 1, limit))

    _patch(sqlite_store.SqliteStore, "events_after", events_after)


def ignore_expected_version() -> None:
    """UpdateTask applies the change whatever expected_version says."""
    original = tasks.TaskBook.update_task

    async def update_task(self: tasks.TaskBook, change: tasks.TaskChange) -> Task:
        return await original(self, dataclasses.replace(change, expected_version=None))

    _patch(tasks.TaskBook, "update_task", update_task)


def total_count_is_page_size() -> None:
    """ListTasks reports the page's length as total_count."""
    original = sqlite_store.SqliteStore.list_tasks

    def list_tasks(self: sqlite_store.SqliteStore, query: TaskQuery) -> tuple[list[Task], int]:
        found, _ = original(self, query)
        return found, len(found)

    _patch(sqlite_store.SqliteStore, "list_tasks", list_tasks)


def leak_subscriptions() -> None:
    """A stream's subscription is never released when the stream ends."""

    def unsubscribe(self: events.Broadcaster, subscription: events.Subscription) -> None:
        return None

    _patch(events.Broadcaster, "unsubscribe", unsubscribe)


MUTANTS: dict[str, Callable[[], None]] = {
    "no_status_changed": no_status_changed,
    "internal_on_unknown_id": internal_on_unknown_id,
    "drop_every_tenth": drop_every_tenth,
    "ignore_assignee_filter": ignore_assignee_filter,
    "replay_skips_first": replay_skips_first,
    "ignore_expected_version": ignore_expected_version,
    "total_count_is_page_size": total_count_is_page_size,
    "leak_subscriptions": leak_subscriptions,
}


REPO = pathlib.Path(__file__).resolve().parent.parent


def command(mutant: str) -> tuple[str, ...]:
    """How to launch the server with a mutant (for ServerProcess(command=...)).

    This is `python -m conformance.mutant_server`, made to work from any
    working directory: the server runs in its project directory, where the
    repository root is not on sys.path.
    """
    bootstrap = (
        f"import runpy, sys; sys.path.insert(0, {str(REPO)!r}); "
        "runpy.run_module('conformance.mutant_server', run_name='__main__', alter_sys=True)"
    )
    return (sys.executable, "-c", bootstrap, "--mutant", mutant)


def main(argv: list[str] | None = None) -> int:
    """Apply the mutant, then run `rig` with the remaining arguments."""
    parser = argparse.ArgumentParser(prog="python -m conformance.mutant_server")
    parser.add_argument("--mutant", required=True, choices=sorted(MUTANTS))
    args, rest = parser.parse_known_args(argv)
    MUTANTS[args.mutant]()
    return int(cli.main(rest))


if __name__ == "__main__":
    sys.exit(main())
