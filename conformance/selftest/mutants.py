"""Deliberately broken Rigger servers, for the suite's self-test. Never part of the product.

    python -m conformance.mutant_server --mutant NAME grpc --port 0 --db PATH

patches one behaviour of the real server's classes at run time, then hands
the rest of the command line to `rig` (rigger_server.cli.main). Each mutant
breaks one promise of the contract's "Behaviour that clients rely on"
(/work/shared/contract/rigger-v1.md) or of the additions this project makes,
and names the case that must catch it; the self-test requires the suite to
notice, and conformance/README.md lists them.

Each patch is a few lines at a seam that outlives refactoring where one
exists: the servicer's status mapping (`service.status_of`), `TaskBook`'s
public methods, the store's methods (`SqliteStore`), `Broadcaster.publish`
and `EventFilter.matches`. The two replay mutants reach the feed's two halves
(`Feed._replay_page`, one page of stored events, and `Feed._go_live`, the
hand-over to live events).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import pathlib
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health
from grpc_reflection.v1alpha import reflection
from rigger_server import (
    app,
    cli,
    errors,
    events,
    feed,
    planning,
    prd,
    service,
    sqlite_store,
    tasks,
    wire,
)
from rigger_server.domain import Event, EventDraft, EventType, Task, TaskStatus, commit_event
from rigger_server.errors import NotFound, PermissionDenied, RiggerError
from rigger_server.store import TaskQuery


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One broken promise: what it breaks, the case that must catch it, and the patch."""

    promise: str
    caught_by: str
    apply: Callable[[], None]


MUTANTS: dict[str, Mutant] = {}


def _mutant(promise: str, caught_by: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    def register(apply: Callable[[], None]) -> Callable[[], None]:
        MUTANTS[apply.__name__] = Mutant(promise, caught_by, apply)
        return apply

    return register


def _patch(owner: object, name: str, replacement: object) -> None:
    # Plain setattr: the point is to replace the real server's behaviour in
    # this process only, without the product knowing about mutants.
    setattr(owner, name, replacement)


def _without(kind: EventType) -> None:
    """Commit every event of a write except those of `kind` (they never existed)."""
    original = sqlite_store.SqliteStore.replace_task

    def replace_task(
        self: sqlite_store.SqliteStore, task: Task, expected: int, drafts: Sequence[EventDraft]
    ) -> list[Event]:
        return list(original(self, task, expected, [d for d in drafts if d.event_type != kind]))

    _patch(sqlite_store.SqliteStore, "replace_task", replace_task)


def _status_instead(code: grpc.StatusCode, when: Callable[[RiggerError], bool]) -> None:
    """The servicer answers `code` for the domain errors `when` picks."""
    original = service.status_of

    def status_of(exc: RiggerError) -> Any:
        return code if when(exc) else original(exc)

    _patch(service, "status_of", status_of)


# --- events -----------------------------------------------------------------------


@_mutant("AddTask emits CREATED", "events_follow_a_task_lifecycle")
def no_created() -> None:
    """AddTask stores the task but emits no CREATED."""
    original = sqlite_store.SqliteStore.insert_task

    def insert_task(
        self: sqlite_store.SqliteStore, task: Task, drafts: Sequence[EventDraft]
    ) -> list[Event]:
        return list(original(self, task, [d for d in drafts if d.event_type != EventType.CREATED]))

    _patch(sqlite_store.SqliteStore, "insert_task", insert_task)


@_mutant(
    "UpdateTask emits STATUS_CHANGED when the status changed",
    "update_status_emits_updated_then_status_changed",
)
def no_status_changed() -> None:
    """UpdateTask never emits STATUS_CHANGED (neither live nor in the log)."""
    _without(EventType.STATUS_CHANGED)


@_mutant(
    "UpdateTask emits ASSIGNED when the assignee changed",
    "update_assignee_emits_assigned_with_previous_assignee",
)
def no_assigned() -> None:
    """UpdateTask never emits ASSIGNED."""
    _without(EventType.ASSIGNED)


@_mutant(
    "metadata names the previous value",
    "update_status_emits_updated_then_status_changed",
)
def previous_status_is_the_new_one() -> None:
    """STATUS_CHANGED's previous_status names the new status, not the previous one."""
    original = sqlite_store.SqliteStore.replace_task

    def replace_task(
        self: sqlite_store.SqliteStore, task: Task, expected: int, drafts: Sequence[EventDraft]
    ) -> list[Event]:
        wrong = {"previous_status": task.status.contract_name}
        drafts = [
            dataclasses.replace(d, metadata=wrong)
            if d.event_type == EventType.STATUS_CHANGED
            else d
            for d in drafts
        ]
        return list(original(self, task, expected, drafts))

    _patch(sqlite_store.SqliteStore, "replace_task", replace_task)


@_mutant("DeleteTask archives and emits DELETED", "delete_archives_and_emits_deleted")
def no_deleted() -> None:
    """DeleteTask archives the task but emits no DELETED."""
    _without(EventType.DELETED)


@_mutant(
    "deleting an archived task again succeeds (and emits nothing)",
    "delete_archived_task_again_succeeds_silently",
)
def delete_archived_is_not_found() -> None:
    """Deleting an archived task answers NOT_FOUND instead of succeeding."""
    original = tasks.TaskBook.delete_task

    async def delete_task(self: tasks.TaskBook, task_id: str) -> None:
        if task_id.strip() and (await self.get_task(task_id)).status is TaskStatus.ARCHIVED:
            raise NotFound(f"task {task_id!r} not found")
        await original(self, task_id)

    _patch(tasks.TaskBook, "delete_task", delete_task)


@_mutant("every event carries the task as it is after the change", "events_follow_a_task_lifecycle")
def events_carry_the_old_task() -> None:
    """Update and delete events carry the task as it was before the change."""
    original = sqlite_store.SqliteStore.replace_task

    def replace_task(
        self: sqlite_store.SqliteStore, task: Task, expected: int, drafts: Sequence[EventDraft]
    ) -> list[Event]:
        before = self.get_task(task.id) or task  # read before the UPDATE, same transaction
        drafts = [dataclasses.replace(d, task=before) for d in drafts]
        return list(original(self, task, expected, drafts))

    _patch(sqlite_store.SqliteStore, "replace_task", replace_task)


@_mutant(
    "an event is published only after its change is committed; a failed call emits nothing",
    "add_task_failed_call_emits_nothing",
)
def failed_call_publishes() -> None:
    """A failed AddTask still publishes the CREATED it had prepared (never committed)."""
    original = tasks.TaskBook.add_task

    async def add_task(self: tasks.TaskBook, new: tasks.NewTask) -> Task:
        try:
            return await original(self, new)
        except RiggerError:
            phantom = Task(
                id="00000000-0000-0000-0000-00000000dead",
                title=new.title,
                status=TaskStatus.TODO,
                created_at="2030-01-01T00:00:00Z",
                updated_at="2030-01-01T00:00:00Z",
                version=1,
            )
            draft = EventDraft("phantom", phantom.created_at, EventType.CREATED, phantom)
            sequence = self.broadcaster.head + 1
            self.broadcaster.publish([commit_event(draft, sequence, wire.encode_event)])
            raise

    _patch(tasks.TaskBook, "add_task", add_task)


# --- filters ------------------------------------------------------------------------


@_mutant("event_types selects the types a subscriber gets", "events_type_filter")
def ignore_type_filter() -> None:
    """Subscriptions filter by assignee only; event_types is ignored."""

    def matches(self: events.EventFilter, event: Event) -> bool:
        return self.assignee is None or event.assignee == self.assignee

    _patch(events.EventFilter, "matches", matches)


@_mutant("assignee_filter selects the tasks' assignee", "events_assignee_filter")
def ignore_assignee_filter() -> None:
    """Subscriptions filter by event type only; assignee_filter is ignored."""

    def matches(self: events.EventFilter, event: Event) -> bool:
        return not self.event_types or event.event_type in self.event_types

    _patch(events.EventFilter, "matches", matches)


@_mutant("both filters apply together", "events_filters_combined")
def filters_either_matches() -> None:
    """With both filters set, an event matching either one is delivered."""
    original = events.EventFilter.matches

    def matches(self: events.EventFilter, event: Event) -> bool:
        if self.event_types and self.assignee is not None:
            by_type = event.event_type in self.event_types
            return by_type or event.assignee == self.assignee
        return original(self, event)

    _patch(events.EventFilter, "matches", matches)


@_mutant("assignee_filter matches the task's assignee after the change", "events_assignee_filter")
def assignee_filter_before_the_change() -> None:
    """ASSIGNED events are filtered by the previous assignee, not the new one.

    Filters read the assignee the log keeps beside each event; here the log
    keeps the previous one for ASSIGNED, live and in replay alike.
    """
    original = sqlite_store.commit_event

    def commit_event(draft: EventDraft, sequence: int, encode: Any) -> Event:
        event = original(draft, sequence, encode)
        if draft.event_type == EventType.ASSIGNED:
            before = draft.metadata["previous_assignee"] or None
            event = dataclasses.replace(event, assignee=before)
        return event

    _patch(sqlite_store, "commit_event", commit_event)


# --- order and exactly-once -----------------------------------------------------------


@_mutant("every subscriber sees every event, exactly once", "events_many_live_events_gapless")
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


@_mutant(
    "every subscriber sees events in commit order",
    "update_status_and_assignee_emits_three_events_in_order",
)
def publish_in_reverse() -> None:
    """The events of one commit are broadcast last first."""
    original = events.Broadcaster.publish

    def publish(self: events.Broadcaster, batch: Iterable[Event]) -> None:
        original(self, list(batch)[::-1])

    _patch(events.Broadcaster, "publish", publish)


@_mutant("after_sequence replays every event after it", "replay_resumes_after_a_sequence")
def replay_skips_first() -> None:
    """after_sequence replay starts one event late: the first stored event is lost."""
    original = sqlite_store.SqliteStore.events_after

    def events_after(
        self: sqlite_store.SqliteStore, sequence: int, limit: int, max_bytes: int | None = None
    ) -> list[Event]:
        return list(original(self, sequence + 1, limit, max_bytes))

    _patch(sqlite_store.SqliteStore, "events_after", events_after)


@_mutant(
    "replay, then live, with no duplicate at the hand-over",
    "replay_racing_writes_over_a_long_log",
)
def duplicate_at_handover() -> None:
    """The replay→live hand-over re-delivers the last replayed event.

    The feed skips live events up to the last sequence replay delivered. Here
    that cursor is one short, so the last replayed event comes again when it
    is also in the live queue, i.e. when it was committed while replay ran.
    """
    original = feed.Feed._go_live

    def _go_live(self: feed.Feed, replayed_to: int) -> None:
        original(self, replayed_to - 1 if replayed_to > 0 else replayed_to)

    _patch(feed.Feed, "_go_live", _go_live)


@_mutant("a replay delivers the whole log after after_sequence", "replay_across_pages")
def replay_first_page_only() -> None:
    """Replay reads only the first page of stored events (500), then goes live."""
    original = feed.Feed._replay_page

    async def _replay_page(self: feed.Feed) -> list[Event]:
        batch = await original(self)
        if self._replaying:
            self._go_live(self._cursor)  # as if this page had been the last
        return batch

    _patch(feed.Feed, "_replay_page", _replay_page)


@_mutant(
    "a subscription is released when its stream ends", "subscribe_cancel_releases_the_subscription"
)
def leak_subscriptions() -> None:
    """A stream's subscription is never released when the stream ends."""

    def unsubscribe(self: events.Broadcaster, subscription: events.Subscription) -> None:
        return None

    _patch(events.Broadcaster, "unsubscribe", unsubscribe)


@_mutant(
    "expected_version: the update applies only at that version, else ABORTED",
    "update_expected_version_mismatch_is_aborted",
)
def ignore_expected_version() -> None:
    """UpdateTask applies the change whatever expected_version says."""
    original = tasks.TaskBook.update_task

    async def update_task(self: tasks.TaskBook, change: tasks.TaskChange) -> Task:
        return await original(self, dataclasses.replace(change, expected_version=None))

    _patch(tasks.TaskBook, "update_task", update_task)


# --- planning -------------------------------------------------------------------------


@_mutant(
    "generated subtasks emit CREATED and their parent DECOMPOSED",
    "orchestrate_decomposes_a_complex_task_into_subtasks",
)
def no_decomposed() -> None:
    """A decomposed task's subtasks are created, but the parent emits no DECOMPOSED."""
    _without(EventType.DECOMPOSED)


@_mutant(
    "generated subtasks emit CREATED and their parent DECOMPOSED",
    "orchestrate_decomposes_a_complex_task_into_subtasks",
)
def subtasks_emit_no_created() -> None:
    """Subtasks are stored, but their CREATED events never exist."""
    original = sqlite_store.SqliteStore.insert_tasks

    def insert_tasks(
        self: sqlite_store.SqliteStore, new: Sequence[Task], drafts: Sequence[EventDraft]
    ) -> list[Event]:
        kept = [d for d in drafts if d.task.parent_task_id is None]
        return list(original(self, new, kept))

    _patch(sqlite_store.SqliteStore, "insert_tasks", insert_tasks)


@_mutant("OrchestrateTask emits ORCHESTRATED", "orchestrate_enhances_a_simple_task_then_tests_it")
def no_orchestrated() -> None:
    """Orchestration commits its steps, but never emits ORCHESTRATED."""
    _without(EventType.ORCHESTRATED)


@_mutant(
    "the response and events say which planner and model actually ran",
    "generate_tasks_from_a_parsed_prd",
)
def claims_the_asked_model() -> None:
    """Generation answers with the model the request asked for, though the offline one ran."""
    original = planning.Planning.generate_tasks

    async def generate_tasks(
        self: planning.Planning, prd_id: str, *, model: str = "", **rest: Any
    ) -> planning.Generated:
        made = await original(self, prd_id, model=model, **rest)
        return dataclasses.replace(made, model=model or made.model)

    _patch(planning.Planning, "generate_tasks", generate_tasks)


@_mutant(
    "a second generation of a PRD does not silently duplicate its tasks",
    "generate_tasks_twice_is_already_exists_unless_replacing",
)
def generation_duplicates() -> None:
    """A PRD's existing tasks go unnoticed: generating it again duplicates them."""
    _patch(sqlite_store.SqliteStore, "tasks_of_prd", lambda self, prd: [])


@_mutant(
    "OrchestrateTask with expected_version: only at that version, else ABORTED",
    "orchestrate_bad_requests_write_nothing",
)
def orchestration_ignores_versions() -> None:
    """OrchestrateTask commits whatever version the task is at, and ignores expected_version."""
    original = planning.Planning.orchestrate_task

    async def orchestrate_task(
        self: planning.Planning, task_id: str, **fields: Any
    ) -> planning.Orchestrated:
        fields["expected_version"] = None
        return await original(self, task_id, **fields)

    _patch(planning.Planning, "orchestrate_task", orchestrate_task)


# --- ListTasks ------------------------------------------------------------------------


@_mutant("ListTasks: status and assignee filters combine", "list_tasks_filters_combine")
def list_filters_do_not_combine() -> None:
    """With a status filter, ListTasks ignores the assignee filter."""
    original = sqlite_store.SqliteStore.list_tasks

    def list_tasks(self: sqlite_store.SqliteStore, query: TaskQuery) -> tuple[list[Task], int]:
        if query.status is not None:
            query = dataclasses.replace(query, assignee=None)
        return original(self, query)

    _patch(sqlite_store.SqliteStore, "list_tasks", list_tasks)


@_mutant(
    "ListTasks leaves archived tasks out unless status asks for ARCHIVED",
    "list_tasks_archived_only_when_asked",
)
def list_includes_archived() -> None:
    """ListTasks without a status filter lists archived tasks too (after the others)."""
    original = sqlite_store.SqliteStore.list_tasks

    def list_tasks(self: sqlite_store.SqliteStore, query: TaskQuery) -> tuple[list[Task], int]:
        found, total = original(self, query)
        if query.status is None:
            archived, more = original(self, dataclasses.replace(query, status=TaskStatus.ARCHIVED))
            found, total = found + archived, total + more
        return found, total

    _patch(sqlite_store.SqliteStore, "list_tasks", list_tasks)


@_mutant("ListTasks lists newest first", "list_tasks_newest_first")
def list_oldest_first() -> None:
    """ListTasks returns each page oldest first."""
    original = sqlite_store.SqliteStore.list_tasks

    def list_tasks(self: sqlite_store.SqliteStore, query: TaskQuery) -> tuple[list[Task], int]:
        found, total = original(self, query)
        return found[::-1], total

    _patch(sqlite_store.SqliteStore, "list_tasks", list_tasks)


@_mutant(
    "ListTasks' total_count counts every match, not just the page",
    "list_tasks_pagination_counts_every_match",
)
def total_count_is_page_size() -> None:
    """ListTasks reports the page's length as total_count."""
    original = sqlite_store.SqliteStore.list_tasks

    def list_tasks(self: sqlite_store.SqliteStore, query: TaskQuery) -> tuple[list[Task], int]:
        found, _ = original(self, query)
        return found, len(found)

    _patch(sqlite_store.SqliteStore, "list_tasks", list_tasks)


# --- errors -------------------------------------------------------------------------


@_mutant("unknown task id: NOT_FOUND", "get_unknown_task_is_not_found")
def internal_on_unknown_id() -> None:
    """An unknown task id answers INTERNAL instead of NOT_FOUND."""
    _status_instead(
        grpc.StatusCode.INTERNAL,
        lambda exc: isinstance(exc, NotFound) and str(exc).startswith("task "),
    )


@_mutant("INVALID_ARGUMENT names the field in the message", "add_task_empty_title_is_invalid")
def invalid_argument_names_no_field() -> None:
    """INVALID_ARGUMENT messages say what is wrong but not which field."""

    def __init__(self: errors.InvalidArgument, field: str, problem: str) -> None:
        RiggerError.__init__(self, problem)
        self.field = field

    _patch(errors.InvalidArgument, "__init__", __init__)


@_mutant("a whitespace title: INVALID_ARGUMENT", "add_task_whitespace_title_is_invalid")
def whitespace_title_accepted() -> None:
    """AddTask accepts a title of only whitespace (it checks only for empty)."""
    original = tasks.TaskBook.add_task

    async def add_task(self: tasks.TaskBook, new: tasks.NewTask) -> Task:
        if new.title and not new.title.strip():
            new = dataclasses.replace(new, title="untitled")
        return await original(self, new)

    _patch(tasks.TaskBook, "add_task", add_task)


@_mutant("unknown enum number: INVALID_ARGUMENT", "list_tasks_unknown_status_is_invalid")
def unknown_status_is_todo() -> None:
    """An unknown TaskStatus number in ListTasks is read as TODO."""
    original = service.check_status

    def check_status(value: int, field: str = "status") -> TaskStatus:
        try:
            return original(value, field)
        except errors.InvalidArgument:
            return TaskStatus.TODO

    _patch(service, "check_status", check_status)


@_mutant("malformed due date: INVALID_ARGUMENT", "add_task_malformed_due_date_is_invalid")
def malformed_due_date_dropped() -> None:
    """AddTask drops a due date that is not YYYY-MM-DD instead of refusing it."""
    original = tasks.TaskBook.add_task

    async def add_task(self: tasks.TaskBook, new: tasks.NewTask) -> Task:
        if new.due_date is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", new.due_date):
            new = dataclasses.replace(new, due_date=None)
        return await original(self, new)

    _patch(tasks.TaskBook, "add_task", add_task)


@_mutant(
    "a PRD path outside the project root: PERMISSION_DENIED",
    "parse_prd_outside_root_is_permission_denied",
)
def prd_outside_root_is_not_found() -> None:
    """A PRD path outside the project root answers NOT_FOUND."""
    _status_instead(grpc.StatusCode.NOT_FOUND, lambda exc: isinstance(exc, PermissionDenied))


@_mutant("a missing PRD file: NOT_FOUND", "parse_prd_missing_file_is_not_found")
def prd_missing_is_invalid() -> None:
    """A missing PRD file answers INVALID_ARGUMENT."""
    _status_instead(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda exc: isinstance(exc, NotFound) and str(exc).startswith("prd_file_path"),
    )


@_mutant("a PRD with no '# Title': INVALID_ARGUMENT", "parse_prd_without_title_is_invalid")
def prd_without_title_accepted() -> None:
    """A PRD without a title is parsed as 'Untitled'."""
    original = prd.parse_prd

    def parse_prd(markdown: str) -> Any:
        try:
            return original(markdown)
        except errors.InvalidArgument:
            return original("# Untitled\n\n" + markdown)

    _patch(prd, "parse_prd", parse_prd)


@_mutant("no call ends in UNKNOWN or INTERNAL for bad input", "get_with_empty_id_is_invalid")
def empty_id_is_internal() -> None:
    """GetTask with an empty task_id fails inside the server: INTERNAL."""
    original = tasks.TaskBook.get_task

    async def get_task(self: tasks.TaskBook, task_id: str) -> Task:
        if not task_id.strip():
            raise RuntimeError("empty key")  # an unguarded lookup, as a bug would
        return await original(self, task_id)

    _patch(tasks.TaskBook, "get_task", get_task)


# --- discovery --------------------------------------------------------------------------


_DISCOVERY = "discovery_reflection_and_health_on_every_loopback"


@_mutant("server reflection is on", _DISCOVERY)
def no_reflection() -> None:
    """The server starts without reflection."""
    _patch(reflection, "enable_server_reflection", lambda *args, **kwargs: None)


@_mutant("the standard health service answers for RiggerService", _DISCOVERY)
def health_for_the_server_only() -> None:
    """Health answers for the whole server ("") but not for rigger.v1.RiggerService."""
    original = health.aio.HealthServicer.set

    async def set_status(self: Any, service_name: str, status: Any) -> None:
        if not service_name:
            await original(self, service_name, status)

    _patch(health.aio.HealthServicer, "set", set_status)


@_mutant("localhost, [::1] and 127.0.0.1 all reach a default server", _DISCOVERY)
def ipv4_only() -> None:
    """`localhost` binds 127.0.0.1 only, so [::1] does not reach the server."""
    _patch(app, "loopbacks", lambda: ["127.0.0.1"])


REPO = pathlib.Path(__file__).resolve().parent.parent


def applies(mutant: str) -> str | None:
    """None when the mutant's patch still fits the server, else why not (runs a subprocess)."""
    done = subprocess.run(
        [*command(mutant), "--apply-only"], capture_output=True, text=True, check=False
    )
    return None if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")


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
    parser.add_argument("--mutant", required=True, action="append", choices=sorted(MUTANTS))
    parser.add_argument(
        "--apply-only",
        action="store_true",
        help="apply the patches and exit: checks that they still fit the server's code",
    )
    args, rest = parser.parse_known_args(argv)
    for name in args.mutant:
        # A patch whose target moved must not pass for a caught mutant: a
        # server that cannot start fails every case.
        try:
            MUTANTS[name].apply()
        except Exception as exc:
            print(f"mutant {name} no longer applies: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 3
    if args.apply_only:
        return 0
    return int(cli.main(rest))


if __name__ == "__main__":
    sys.exit(main())
