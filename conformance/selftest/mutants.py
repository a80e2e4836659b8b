"""Deliberately broken Rigger servers, for the suite's self-test. Never part of the product.

    python -m conformance.selftest.mutants --mutant NAME grpc --port 0 --db PATH

assembles the real server with one part swapped through its test seams
(rigger_server/seams.py), then hands the rest of the command line to `rig`
(rigger_server.cli.main). Each mutant breaks one promise of the contract's
"Behaviour that clients rely on" or of the additions this project makes, and
names the case that must catch it; the self-test requires the suite to
notice, and conformance/README.md lists them.

A mutant only uses what the seams offer: it wraps the store, or subclasses
one of the parts the server is built from (the broadcaster, the task book,
planning, the servicer, the health service) and overrides public methods;
its feeds are built with `Feed`'s public constructor, and the hand-over from
replay to live is `Feed.hand_over`. A mutant whose method is gone from its
part no longer applies: `--apply-only` says so, and the self-test reports it
NOT CAUGHT rather than count the server's failure to start as a catch.

This is the only module of the suite that imports the server.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import re
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import grpc
from rigger_server import cli, errors, prd, seams, wire
from rigger_server.confined import read_confined
from rigger_server.domain import (
    Event,
    EventDraft,
    EventType,
    Prd,
    Task,
    TaskStatus,
    commit_event,
    now_rfc3339,
)
from rigger_server.errors import NotFound, PermissionDenied, RiggerError
from rigger_server.events import EventFilter, Turns
from rigger_server.feed import Feed
from rigger_server.guard import UNGUARDED, WriteGuard
from rigger_server.regeneration import GenerationMode, Outcome, Reconciled, Result
from rigger_server.seams import Seams
from rigger_server.store import Store, TaskQuery
from rigger_server.tasks import NewTask, TaskBook, TaskChange

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One broken promise: what it breaks, the case that must catch it, and the swap."""

    promise: str
    caught_by: str
    apply: Callable[[Seams], Seams]


MUTANTS: dict[str, Mutant] = {}


def _mutant(
    promise: str, caught_by: str
) -> Callable[[Callable[[Seams], Seams]], Callable[[Seams], Seams]]:
    def register(apply: Callable[[Seams], Seams]) -> Callable[[Seams], Seams]:
        MUTANTS[apply.__name__] = Mutant(promise, caught_by, apply)
        return apply

    return register


def _override(base: type[T], **methods: Callable[..., Any]) -> type[T]:
    """`base` with `methods` in place of its own; each must be a method `base` still has."""
    for name in methods:
        if not callable(getattr(base, name, None)):
            raise AttributeError(f"{base.__name__} has no method {name!r} any more")
    return type(f"Mutant{base.__name__}", (base,), methods)


class _WrappedStore:
    """A store that answers as the server's own, except for the methods a mutant replaces."""

    def __init__(self, store: Store, **methods: Callable[..., Any]) -> None:
        self.inner = store
        for name, method in methods.items():
            setattr(self, name, method)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _store(**methods: Callable[[Store], Callable[..., Any]]) -> Callable[[Seams], Seams]:
    """Wrap the store: each of `methods` is given the store and returns its stand-in."""
    for name in methods:
        if not callable(getattr(Store, name, None)):
            raise AttributeError(f"the Store protocol has no method {name!r} any more")

    def apply(chosen: Seams) -> Seams:
        def wrap(store: Store) -> Store:
            inner = chosen.store(store)
            replaced = {name: make(inner) for name, make in methods.items()}
            wrapped: Any = _WrappedStore(inner, **replaced)
            return wrapped  # a Store in all but name: every other method is the inner store's

        return dataclasses.replace(chosen, store=wrap)

    return apply


def _without(kind: EventType) -> Callable[[Seams], Seams]:
    """Commit every event of an update except those of `kind` (they never existed)."""

    def replace_task(store: Store) -> Callable[..., list[Event]]:
        def replace(task: Task, expected: int, drafts: Sequence[EventDraft]) -> list[Event]:
            return list(
                store.replace_task(task, expected, [d for d in drafts if d.event_type != kind])
            )

        return replace

    return _store(replace_task=replace_task)


def _answer_instead(
    code: grpc.StatusCode, when: Callable[[RiggerError], bool]
) -> Callable[[Seams], Seams]:
    """The servicer answers `code` for the domain errors `when` picks."""

    def apply(chosen: Seams) -> Seams:
        original = chosen.servicer.answer

        def answer(self: Any, exc: RiggerError) -> tuple[grpc.StatusCode, str]:
            found = original(self, exc)
            return (code, found[1]) if when(exc) else found

        return dataclasses.replace(chosen, servicer=_override(chosen.servicer, answer=answer))

    return apply


def _book(chosen: Seams, **methods: Callable[..., Any]) -> Seams:
    return dataclasses.replace(chosen, book=_override(chosen.book, **methods))


def _feeds(
    chosen: Seams,
    make: Callable[[TaskBook, EventFilter, int | None, Turns | None], Feed],
) -> Seams:
    """Every subscription's feed made by `make` (from the book, filter, after_sequence, turns)."""

    def open_feed(
        self: TaskBook,
        event_filter: EventFilter,
        after_sequence: int | None,
        turns: Turns | None = None,
    ) -> Feed:
        return make(self, event_filter, after_sequence, turns)

    return _book(chosen, open_feed=open_feed)


def _filtering(matches: Callable[[EventFilter, Event], bool]) -> Callable[[Seams], Seams]:
    """Subscriptions filter with `matches` (given the subscriber's filter) instead."""
    wrong = _override(EventFilter, matches=matches)

    def apply(chosen: Seams) -> Seams:
        def make(
            book: TaskBook, given: EventFilter, after: int | None, turns: Turns | None
        ) -> Feed:
            mutated = wrong(event_types=given.event_types, assignee=given.assignee)
            return Feed(book.broadcaster, book.read_log, mutated, after, turns)

        return _feeds(chosen, make)

    return apply


# --- events -----------------------------------------------------------------------


@_mutant("AddTask emits CREATED", "events_follow_a_task_lifecycle")
def no_created(chosen: Seams) -> Seams:
    """AddTask stores the task but emits no CREATED."""

    def insert_task(store: Store) -> Callable[..., list[Event]]:
        def insert(task: Task, drafts: Sequence[EventDraft]) -> list[Event]:
            kept = [d for d in drafts if d.event_type != EventType.CREATED]
            return list(store.insert_task(task, kept))

        return insert

    return _store(insert_task=insert_task)(chosen)


@_mutant(
    "UpdateTask emits STATUS_CHANGED when the status changed",
    "update_status_emits_updated_then_status_changed",
)
def no_status_changed(chosen: Seams) -> Seams:
    """UpdateTask never emits STATUS_CHANGED (neither live nor in the log)."""
    return _without(EventType.STATUS_CHANGED)(chosen)


@_mutant(
    "UpdateTask emits ASSIGNED when the assignee changed",
    "update_assignee_emits_assigned_with_previous_assignee",
)
def no_assigned(chosen: Seams) -> Seams:
    """UpdateTask never emits ASSIGNED."""
    return _without(EventType.ASSIGNED)(chosen)


@_mutant(
    "metadata names the previous value",
    "update_status_emits_updated_then_status_changed",
)
def previous_status_is_the_new_one(chosen: Seams) -> Seams:
    """STATUS_CHANGED's previous_status names the new status, not the previous one."""

    def replace_task(store: Store) -> Callable[..., list[Event]]:
        def replace(task: Task, expected: int, drafts: Sequence[EventDraft]) -> list[Event]:
            wrong = {"previous_status": task.status.contract_name}
            drafts = [
                dataclasses.replace(d, metadata=wrong)
                if d.event_type == EventType.STATUS_CHANGED
                else d
                for d in drafts
            ]
            return list(store.replace_task(task, expected, drafts))

        return replace

    return _store(replace_task=replace_task)(chosen)


@_mutant("DeleteTask archives and emits DELETED", "delete_archives_and_emits_deleted")
def no_deleted(chosen: Seams) -> Seams:
    """DeleteTask archives the task but emits no DELETED."""
    return _without(EventType.DELETED)(chosen)


@_mutant(
    "deleting an archived task again succeeds (and emits nothing)",
    "delete_archived_task_again_succeeds_silently",
)
def delete_archived_is_not_found(chosen: Seams) -> Seams:
    """Deleting an archived task answers NOT_FOUND instead of succeeding."""
    original = chosen.book.delete_task

    async def delete_task(self: TaskBook, task_id: str, guard: WriteGuard = UNGUARDED) -> None:
        if task_id.strip() and (await self.get_task(task_id)).status is TaskStatus.ARCHIVED:
            raise NotFound(f"task {task_id!r} not found")
        await original(self, task_id, guard)

    return _book(chosen, delete_task=delete_task)


@_mutant("every event carries the task as it is after the change", "events_follow_a_task_lifecycle")
def events_carry_the_old_task(chosen: Seams) -> Seams:
    """Update and delete events carry the task as it was before the change."""

    def replace_task(store: Store) -> Callable[..., list[Event]]:
        def replace(task: Task, expected: int, drafts: Sequence[EventDraft]) -> list[Event]:
            # Read before the UPDATE, in the same transaction (the writer's thread).
            before = store.get_task(task.id) or task
            drafts = [dataclasses.replace(d, task=before) for d in drafts]
            return list(store.replace_task(task, expected, drafts))

        return replace

    return _store(replace_task=replace_task)(chosen)


@_mutant(
    "an event is published only after its change is committed; a failed call emits nothing",
    "add_task_failed_call_emits_nothing",
)
def failed_call_publishes(chosen: Seams) -> Seams:
    """A failed AddTask still publishes the CREATED it had prepared (never committed)."""
    original = chosen.book.add_task

    async def add_task(self: TaskBook, new: NewTask, guard: WriteGuard = UNGUARDED) -> Task:
        try:
            return await original(self, new, guard)
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

    return _book(chosen, add_task=add_task)


# --- filters ------------------------------------------------------------------------


@_mutant("event_types selects the types a subscriber gets", "events_type_filter")
def ignore_type_filter(chosen: Seams) -> Seams:
    """Subscriptions filter by assignee only; event_types is ignored."""

    def matches(self: EventFilter, event: Event) -> bool:
        return self.assignee is None or event.assignee == self.assignee

    return _filtering(matches)(chosen)


@_mutant("assignee_filter selects the tasks' assignee", "events_assignee_filter")
def ignore_assignee_filter(chosen: Seams) -> Seams:
    """Subscriptions filter by event type only; assignee_filter is ignored."""

    def matches(self: EventFilter, event: Event) -> bool:
        return not self.event_types or event.event_type in self.event_types

    return _filtering(matches)(chosen)


@_mutant("both filters apply together", "events_filters_combined")
def filters_either_matches(chosen: Seams) -> Seams:
    """With both filters set, an event matching either one is delivered."""

    def matches(self: EventFilter, event: Event) -> bool:
        if self.event_types and self.assignee is not None:
            by_type = event.event_type in self.event_types
            return by_type or event.assignee == self.assignee
        return EventFilter.matches(self, event)

    return _filtering(matches)(chosen)


@_mutant("assignee_filter matches the task's assignee after the change", "events_assignee_filter")
def assignee_filter_before_the_change(chosen: Seams) -> Seams:
    """ASSIGNED events are filtered by the previous assignee, not the new one.

    Filters read the assignee the log keeps beside each event; here the store
    answers with the previous one for ASSIGNED, live and in replay alike.
    """

    def before(events: Iterable[Event]) -> list[Event]:
        return [
            dataclasses.replace(e, assignee=e.metadata.get("previous_assignee") or None)
            if e.event_type == EventType.ASSIGNED
            else e
            for e in events
        ]

    def replace_task(store: Store) -> Callable[..., list[Event]]:
        return lambda *args: before(store.replace_task(*args))

    def events_after(store: Store) -> Callable[..., list[Event]]:
        return lambda *args: before(store.events_after(*args))

    return _store(replace_task=replace_task, events_after=events_after)(chosen)


# --- order and exactly-once -----------------------------------------------------------


@_mutant("every subscriber sees every event, exactly once", "events_many_live_events_gapless")
def drop_every_tenth(chosen: Seams) -> Seams:
    """Every tenth event is committed and counted as published, but offered to no subscriber.

    The broadcaster's head still moves past it, so the log tail, which reads
    back what was not published, has nothing to heal.
    """
    original = chosen.broadcaster.publish
    counter = itertools.count(1)

    def publish(self: Any, events: Iterable[Event]) -> None:
        for event in events:
            if next(counter) % 10 == 0:
                self.head = event.sequence
            else:
                original(self, [event])

    return dataclasses.replace(chosen, broadcaster=_override(chosen.broadcaster, publish=publish))


@_mutant(
    "every subscriber sees events in commit order",
    "update_status_and_assignee_emits_three_events_in_order",
)
def publish_in_reverse(chosen: Seams) -> Seams:
    """The events of one commit are broadcast last first."""
    original = chosen.broadcaster.publish

    def publish(self: Any, events: Iterable[Event]) -> None:
        original(self, list(events)[::-1])

    return dataclasses.replace(chosen, broadcaster=_override(chosen.broadcaster, publish=publish))


@_mutant("after_sequence replays every event after it", "replay_resumes_after_a_sequence")
def replay_skips_first(chosen: Seams) -> Seams:
    """after_sequence replay starts one event late: the first stored event is lost."""

    def events_after(store: Store) -> Callable[..., list[Event]]:
        def after(sequence: int, limit: int, max_bytes: int | None = None) -> list[Event]:
            return list(store.events_after(sequence + 1, limit, max_bytes))

        return after

    return _store(events_after=events_after)(chosen)


@_mutant(
    "replay, then live, with no duplicate at the hand-over",
    "replay_racing_writes_over_a_long_log",
)
def duplicate_at_handover(chosen: Seams) -> Seams:
    """The replay→live hand-over re-delivers the last replayed event.

    The feed skips live events up to the last sequence replay delivered. Here
    that cursor is one short, so the last replayed event comes again when it
    is also in the live queue, i.e. when it was committed while replay ran.
    """

    def hand_over(self: Feed, replayed_to: int) -> None:
        Feed.hand_over(self, replayed_to - 1 if replayed_to > 0 else replayed_to)

    one_short = _override(Feed, hand_over=hand_over)

    def make(book: TaskBook, given: EventFilter, after: int | None, turns: Turns | None) -> Feed:
        return one_short(book.broadcaster, book.read_log, given, after, turns)

    return _feeds(chosen, make)


@_mutant("a replay delivers the whole log after after_sequence", "replay_across_pages")
def replay_first_page_only(chosen: Seams) -> Seams:
    """Replay reads only the first page of stored events (500), then goes live."""

    def make(book: TaskBook, given: EventFilter, after: int | None, turns: Turns | None) -> Feed:
        pages = itertools.count()

        async def read_log(after: int, limit: int, max_bytes: int | None = None) -> list[Event]:
            # An empty page: as far as the feed can tell, replay is done.
            return await book.read_log(after, limit, max_bytes) if next(pages) == 0 else []

        return Feed(book.broadcaster, read_log, given, after, turns)

    return _feeds(chosen, make)


@_mutant(
    "a subscription is released when its stream ends", "subscribe_cancel_releases_the_subscription"
)
def leak_subscriptions(chosen: Seams) -> Seams:
    """A stream's subscription is never released when the stream ends."""

    def unsubscribe(self: Any, subscription: Any) -> None:
        return None

    return dataclasses.replace(
        chosen, broadcaster=_override(chosen.broadcaster, unsubscribe=unsubscribe)
    )


@_mutant(
    "expected_version: the update applies only at that version, else ABORTED",
    "update_expected_version_mismatch_is_aborted",
)
def ignore_expected_version(chosen: Seams) -> Seams:
    """UpdateTask applies the change whatever expected_version says."""
    original = chosen.book.update_task

    async def update_task(
        self: TaskBook, change: TaskChange, guard: WriteGuard = UNGUARDED
    ) -> Task:
        return await original(self, dataclasses.replace(change, expected_version=None), guard)

    return _book(chosen, update_task=update_task)


# --- planning -------------------------------------------------------------------------


@_mutant(
    "generated subtasks emit CREATED and their parent DECOMPOSED",
    "orchestrate_decomposes_a_complex_task_into_subtasks",
)
def no_decomposed(chosen: Seams) -> Seams:
    """A decomposed task's subtasks are created, but the parent emits no DECOMPOSED."""
    return _without(EventType.DECOMPOSED)(chosen)


@_mutant(
    "generated subtasks emit CREATED and their parent DECOMPOSED",
    "orchestrate_decomposes_a_complex_task_into_subtasks",
)
def subtasks_emit_no_created(chosen: Seams) -> Seams:
    """Subtasks are stored, but their CREATED events never exist."""

    def insert_tasks(store: Store) -> Callable[..., list[Event]]:
        def insert(new: Sequence[Task], drafts: Sequence[EventDraft]) -> list[Event]:
            return list(
                store.insert_tasks(new, [d for d in drafts if d.task.parent_task_id is None])
            )

        return insert

    return _store(insert_tasks=insert_tasks)(chosen)


@_mutant("OrchestrateTask emits ORCHESTRATED", "orchestrate_enhances_a_simple_task_then_tests_it")
def no_orchestrated(chosen: Seams) -> Seams:
    """Orchestration commits its steps, but never emits ORCHESTRATED."""
    return _without(EventType.ORCHESTRATED)(chosen)


@_mutant(
    "the response and events say which planner and model actually ran",
    "generate_tasks_from_a_parsed_prd",
)
def claims_the_asked_model(chosen: Seams) -> Seams:
    """Generation answers with the model the request asked for, though the offline one ran."""
    original = chosen.planning.generate_tasks

    async def generate_tasks(self: Any, prd_id: str, *, model: str = "", **rest: Any) -> Any:
        made = await original(self, prd_id, model=model, **rest)
        # answer=b"": the answer the server encoded before its commit is made afresh.
        return dataclasses.replace(made, model=model or made.model, answer=b"")

    return dataclasses.replace(
        chosen, planning=_override(chosen.planning, generate_tasks=generate_tasks)
    )


@_mutant(
    "a second generation of a PRD does not silently duplicate its tasks",
    "generate_tasks_twice_is_already_exists_unless_replacing",
)
def generation_duplicates(chosen: Seams) -> Seams:
    """A PRD's existing tasks go unnoticed: generating it again duplicates them."""
    return _store(tasks_of_prd=lambda store: lambda prd: [])(chosen)


@_mutant(
    "OrchestrateTask with expected_version: only at that version, else ABORTED",
    "orchestrate_bad_requests_write_nothing",
)
def orchestration_ignores_versions(chosen: Seams) -> Seams:
    """OrchestrateTask commits whatever version the task is at, and ignores expected_version."""
    original = chosen.planning.orchestrate_task

    async def orchestrate_task(self: Any, task_id: str, **fields: Any) -> Any:
        fields["expected_version"] = None
        return await original(self, task_id, **fields)

    return dataclasses.replace(
        chosen, planning=_override(chosen.planning, orchestrate_task=orchestrate_task)
    )


# --- GenerateTasksFromPRD modes -------------------------------------------------------


async def _tasks_of(planning: Any, prd_id: str) -> list[Task]:
    """Every task of the PRD a prd_id names (an id, or a path), oldest first."""
    prd = await planning.book.read(planning.store.get_prd, prd_id)
    if prd is None:
        try:
            prd, _ = await planning.book.read_prd(prd_id)
        except RiggerError:
            return []  # the generation itself will say what is wrong
    return list(await planning.book.read(planning.store.tasks_of_prd, prd))


def _live(tasks: Iterable[Task], *statuses: TaskStatus) -> list[Task]:
    return [
        t
        for t in tasks
        if t.parent_task_id is None
        and t.status is not TaskStatus.ARCHIVED
        and (not statuses or t.status in statuses)
    ]


def _generating(
    change: Callable[[Any, str, GenerationMode], Awaitable[GenerationMode]],
) -> Callable[[Seams], Seams]:
    """Planning.generate_tasks after `change(planning, prd_id, mode)`, with the mode it gives."""

    def apply(chosen: Seams) -> Seams:
        original = chosen.planning.generate_tasks

        async def generate_tasks(
            self: Any, prd_id: str, *, mode: GenerationMode = GenerationMode.CREATE, **rest: Any
        ) -> Any:
            return await original(self, prd_id, mode=await change(self, prd_id, mode), **rest)

        return dataclasses.replace(
            chosen, planning=_override(chosen.planning, generate_tasks=generate_tasks)
        )

    return apply


@_mutant(
    "GENERATION_MODE_SYNC keeps the tasks of the items still planned, the work done on them too",
    "generate_tasks_sync_keeps_work_done_and_recreates_a_deleted_item",
)
def sync_recreates_everything(chosen: Seams) -> Seams:
    """SYNC archives every task of the PRD, work done or not, and creates every item afresh."""

    async def change(planning: Any, prd_id: str, mode: GenerationMode) -> GenerationMode:
        if mode is not GenerationMode.SYNC:
            return mode
        for task in _live(await _tasks_of(planning, prd_id)):
            await planning.book.delete_task(task.id)
        return GenerationMode.CREATE

    return _generating(change)(chosen)


@_mutant(
    "a regeneration that fails writes nothing, whatever its mode",
    "a_failed_regeneration_in_either_mode_writes_nothing",
)
def regeneration_archives_before_planning(chosen: Seams) -> Seams:
    """REPLACE and SYNC archive the PRD's TODO tasks in a write of their own, before planning."""

    async def change(planning: Any, prd_id: str, mode: GenerationMode) -> GenerationMode:
        if mode is GenerationMode.CREATE:
            return mode
        for task in _live(await _tasks_of(planning, prd_id), TaskStatus.TODO):
            await planning.book.delete_task(task.id)
        return mode

    return _generating(change)(chosen)


@_mutant(
    "a REPLACE generation leaves no item with two tasks: a started task keeps its item",
    "generate_tasks_replace_after_orchestration_leaves_no_duplicates",
)
def replace_duplicates_started_items(chosen: Seams) -> Seams:
    """REPLACE archives the TODO tasks and creates every item anew, beside the started ones."""
    original = chosen.reconcile

    def reconcile(
        prd_id: str, plan: Any, existing: Sequence[Task], mode: GenerationMode, now: str
    ) -> Reconciled:
        if mode is GenerationMode.REPLACE:
            # The started tasks go unseen, so their items get new tasks too.
            unstarted = (TaskStatus.TODO, TaskStatus.ARCHIVED)
            existing = [t for t in existing if t.status in unstarted]
        return original(prd_id, plan, existing, mode, now)

    return dataclasses.replace(chosen, reconcile=reconcile)


@_mutant(
    "GENERATION_MODE_SYNC brings a kept task's dependencies in line with the plan",
    "generate_tasks_sync_keeps_work_done_and_recreates_a_deleted_item",
)
def sync_ignores_dependencies(chosen: Seams) -> Seams:
    """SYNC leaves a kept task's dependencies as they were, on a task that may be gone."""
    original = chosen.reconcile

    def reconcile(
        prd_id: str, plan: Any, existing: Sequence[Task], mode: GenerationMode, now: str
    ) -> Reconciled:
        made = original(prd_id, plan, existing, mode, now)
        if mode is not GenerationMode.SYNC:
            return made
        before = {task.id: task for task in existing}
        updated = []
        replaced: dict[str, Result] = {}
        for after, version, drafts in made.updated:
            old = before[after.id]
            result = next(r for r in made.results if r.task.id == after.id)
            fields = tuple(f for f in result.changed_fields if f != "dependencies")
            if fields == result.changed_fields:
                updated.append((after, version, drafts))
                continue
            if not fields:
                updated.append((dataclasses.replace(old, prd_item=after.prd_item), version, []))
                replaced[after.id] = Result(old, Outcome.KEPT)
                continue
            kept = dataclasses.replace(after, dependencies=old.dependencies)
            metadata = {**drafts[0].metadata, "changed_fields": ",".join(fields)}
            draft = EventDraft.new(EventType.UPDATED, kept, drafts[0].timestamp, **metadata)
            updated.append((kept, version, [draft]))
            replaced[after.id] = Result(kept, Outcome.UPDATED, fields)
        made.updated = updated
        made.results = [replaced.get(r.task.id, r) for r in made.results]
        return made

    return dataclasses.replace(chosen, reconcile=reconcile)


# --- ListTasks ------------------------------------------------------------------------


def _listing(
    change: Callable[[Callable[[TaskQuery], Any], TaskQuery], Any],
) -> Callable[[Seams], Seams]:
    """ListTasks answers `change(the store's list_tasks, query)`."""
    return _store(list_tasks=lambda store: lambda query: change(store.list_tasks, query))


@_mutant("ListTasks: status and assignee filters combine", "list_tasks_filters_combine")
def list_filters_do_not_combine(chosen: Seams) -> Seams:
    """With a status filter, ListTasks ignores the assignee filter."""

    def change(original: Callable[[TaskQuery], Any], query: TaskQuery) -> Any:
        if query.status is not None:
            query = dataclasses.replace(query, assignee=None)
        return original(query)

    return _listing(change)(chosen)


@_mutant(
    "ListTasks leaves archived tasks out unless status asks for ARCHIVED",
    "list_tasks_archived_only_when_asked",
)
def list_includes_archived(chosen: Seams) -> Seams:
    """ListTasks without a status filter lists archived tasks too (after the others)."""

    def change(original: Callable[[TaskQuery], Any], query: TaskQuery) -> Any:
        found, total = original(query)
        if query.status is None:
            archived, more = original(dataclasses.replace(query, status=TaskStatus.ARCHIVED))
            found, total = found + archived, total + more
        return found, total

    return _listing(change)(chosen)


@_mutant("ListTasks lists newest first", "list_tasks_newest_first")
def list_oldest_first(chosen: Seams) -> Seams:
    """ListTasks returns each page oldest first."""

    def change(original: Callable[[TaskQuery], Any], query: TaskQuery) -> Any:
        found, total = original(query)
        return found[::-1], total

    return _listing(change)(chosen)


@_mutant(
    "ListTasks' total_count counts every match, not just the page",
    "list_tasks_pagination_counts_every_match",
)
def total_count_is_page_size(chosen: Seams) -> Seams:
    """ListTasks reports the page's length as total_count."""

    def change(original: Callable[[TaskQuery], Any], query: TaskQuery) -> Any:
        found, _ = original(query)
        return found, len(found)

    return _listing(change)(chosen)


# --- errors -------------------------------------------------------------------------


@_mutant("unknown task id: NOT_FOUND", "get_unknown_task_is_not_found")
def internal_on_unknown_id(chosen: Seams) -> Seams:
    """An unknown task id answers INTERNAL instead of NOT_FOUND."""
    return _answer_instead(
        grpc.StatusCode.INTERNAL,
        lambda exc: isinstance(exc, NotFound) and str(exc).startswith("task "),
    )(chosen)


@_mutant("INVALID_ARGUMENT names the field in the message", "add_task_empty_title_is_invalid")
def invalid_argument_names_no_field(chosen: Seams) -> Seams:
    """INVALID_ARGUMENT messages say what is wrong but not which field."""
    original = chosen.servicer.answer

    def answer(self: Any, exc: RiggerError) -> tuple[grpc.StatusCode, str]:
        code, message = original(self, exc)
        if isinstance(exc, errors.InvalidArgument):
            message = message.removeprefix(f"{exc.field}: ")
        return code, message

    return dataclasses.replace(chosen, servicer=_override(chosen.servicer, answer=answer))


@_mutant("a whitespace title: INVALID_ARGUMENT", "add_task_whitespace_title_is_invalid")
def whitespace_title_accepted(chosen: Seams) -> Seams:
    """AddTask accepts a title of only whitespace (it checks only for empty)."""
    original = chosen.book.add_task

    async def add_task(self: TaskBook, new: NewTask, guard: WriteGuard = UNGUARDED) -> Task:
        if new.title and not new.title.strip():
            new = dataclasses.replace(new, title="untitled")
        return await original(self, new, guard)

    return _book(chosen, add_task=add_task)


@_mutant("unknown enum number: INVALID_ARGUMENT", "list_tasks_unknown_status_is_invalid")
def unknown_status_is_todo(chosen: Seams) -> Seams:
    """An unknown TaskStatus number in ListTasks is read as TODO."""
    original = chosen.servicer.ListTasks
    known = {status.value for status in TaskStatus}

    async def list_tasks(self: Any, request: Any, context: Any) -> Any:
        status = getattr(request, "status", None)
        if status is not None and request.HasField("status") and status not in known:
            request = type(request).FromString(request.SerializeToString())
            request.status = TaskStatus.TODO.value
        return await original(self, request, context)

    return dataclasses.replace(chosen, servicer=_override(chosen.servicer, ListTasks=list_tasks))


@_mutant("malformed due date: INVALID_ARGUMENT", "add_task_malformed_due_date_is_invalid")
def malformed_due_date_dropped(chosen: Seams) -> Seams:
    """AddTask drops a due date that is not YYYY-MM-DD instead of refusing it."""
    original = chosen.book.add_task

    async def add_task(self: TaskBook, new: NewTask, guard: WriteGuard = UNGUARDED) -> Task:
        if new.due_date is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", new.due_date):
            new = dataclasses.replace(new, due_date=None)
        return await original(self, new, guard)

    return _book(chosen, add_task=add_task)


@_mutant(
    "a PRD path outside the project root: PERMISSION_DENIED",
    "parse_prd_outside_root_is_permission_denied",
)
def prd_outside_root_is_not_found(chosen: Seams) -> Seams:
    """A PRD path outside the project root answers NOT_FOUND."""
    return _answer_instead(
        grpc.StatusCode.NOT_FOUND, lambda exc: isinstance(exc, PermissionDenied)
    )(chosen)


@_mutant("a missing PRD file: NOT_FOUND", "parse_prd_missing_file_is_not_found")
def prd_missing_is_invalid(chosen: Seams) -> Seams:
    """A missing PRD file answers INVALID_ARGUMENT."""
    return _answer_instead(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda exc: isinstance(exc, NotFound) and str(exc).startswith("prd_file_path"),
    )(chosen)


@_mutant("a PRD with no '# Title': INVALID_ARGUMENT", "parse_prd_without_title_is_invalid")
def prd_without_title_accepted(chosen: Seams) -> Seams:
    """A PRD without a title is parsed as 'Untitled'."""
    original = chosen.book.read_prd

    async def read_prd(self: TaskBook, requested_path: str) -> tuple[Prd, Any]:
        try:
            return await original(self, requested_path)
        except errors.InvalidArgument as exc:
            if "# Title" not in str(exc):
                raise
        # Read again, and parsed as if it began with a title.
        read = await asyncio.to_thread(
            read_confined,
            self.project_root,
            requested_path,
            field="prd_file_path",
            max_bytes=self.limits.max_prd_bytes,
        )
        parsed = prd.parse_prd("# Untitled\n\n" + read.text)
        made = Prd(
            id=f"prd-{uuid.uuid4()}",
            path=requested_path,
            title=parsed.title,
            objectives=parsed.objectives,
            tech_stack=parsed.tech_stack,
            constraints=parsed.constraints,
            parsed_at=now_rfc3339(),
            markdown=read.text,
            resolved_path=read.path,
        )
        return made, parsed

    return _book(chosen, read_prd=read_prd)


@_mutant("no call ends in UNKNOWN or INTERNAL for bad input", "get_with_empty_id_is_invalid")
def empty_id_is_internal(chosen: Seams) -> Seams:
    """GetTask with an empty task_id fails inside the server: INTERNAL."""
    original = chosen.book.get_task

    async def get_task(self: TaskBook, task_id: str) -> Task:
        if not task_id.strip():
            raise RuntimeError("empty key")  # an unguarded lookup, as a bug would
        return await original(self, task_id)

    return _book(chosen, get_task=get_task)


# --- discovery --------------------------------------------------------------------------


_DISCOVERY = "discovery_reflection_and_health_on_every_loopback"


@_mutant("server reflection is on", _DISCOVERY)
def no_reflection(chosen: Seams) -> Seams:
    """The server starts without reflection."""

    def reflection(services: Sequence[str], server: grpc.aio.Server) -> None:
        return None

    return dataclasses.replace(chosen, reflection=reflection)


@_mutant("the standard health service answers for RiggerService", _DISCOVERY)
def health_for_the_server_only(chosen: Seams) -> Seams:
    """Health answers for the whole server ("") but not for rigger.v1.RiggerService."""
    original = chosen.health.set

    async def set_status(self: Any, service_name: str, status: Any) -> None:
        if not service_name:
            await original(self, service_name, status)

    return dataclasses.replace(chosen, health=_override(chosen.health, set=set_status))


@_mutant("localhost, [::1] and 127.0.0.1 all reach a default server", _DISCOVERY)
def ipv4_only(chosen: Seams) -> Seams:
    """`localhost` binds 127.0.0.1 only, so [::1] does not reach the server."""
    return dataclasses.replace(chosen, loopbacks=lambda hosts: ["127.0.0.1"])


def assemble(names: Sequence[str]) -> Seams:
    """The server's seams with every named mutant applied, in order.

    Raises what a mutant that no longer fits the server's parts raises.
    """
    chosen = Seams()
    for name in names:
        chosen = MUTANTS[name].apply(chosen)
    return chosen


def main(argv: list[str] | None = None) -> int:
    """Apply the mutants, then run `rig` with the remaining arguments."""
    parser = argparse.ArgumentParser(prog="python -m conformance.selftest.mutants")
    parser.add_argument("--mutant", required=True, action="append", choices=sorted(MUTANTS))
    parser.add_argument(
        "--apply-only",
        action="store_true",
        help="apply the mutants and exit: checks that they still fit the server's parts",
    )
    args, rest = parser.parse_known_args(argv)
    # A mutant that no longer fits must not pass for a caught one: a server
    # that cannot start fails every case.
    try:
        chosen = assemble(args.mutant)
    except Exception as exc:
        print(
            f"mutant {args.mutant} no longer applies: {type(exc).__name__}: {exc}", file=sys.stderr
        )
        return 3
    if args.apply_only:
        return 0
    seams.install(chosen)
    return int(cli.main(rest))


if __name__ == "__main__":
    sys.exit(main())
