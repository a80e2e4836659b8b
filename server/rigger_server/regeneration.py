"""Generating a PRD that has tasks already: which task each item keeps, and what changes.

A generation's plan is a list of items. Each item has an identity: its
planned title, normalised (markdown reduced to its text, case and spacing
ignored, a closing full stop dropped), and its place among the items with
that same title (0 for the first). A generated task keeps the identity of
its item, and what was planned for its title and due date, in
`Task.prd_item`, so a later generation finds it even after it was renamed.
A task without one (generated before the identity was kept, or added with
AddTask and the PRD's id) is matched by its current title: the oldest such
task with a title takes that title's first free place. Each identity goes
to one live task at most: a second task claiming one is treated as gone,
so no generation leaves two live tasks for one item.

Then, by mode (GenerationMode in the contract):
- SYNC: an item with a task keeps it (id, status, assignee, orchestration,
  subtasks). Title and due date follow the PRD only where the PRD changed
  them since the task was generated (a user's rename is kept otherwise; a
  task without an identity takes the PRD's wherever they differ);
  complexity, reasoning, context files and dependencies are the planner's
  and follow the plan. Any change is one UPDATED event naming the changed
  fields. An item without a task gets a new one. A task whose item is gone
  is archived if still in TODO (its TODO subtasks with it), else left alone.
- REPLACE: as SYNC, except that a task still in TODO is archived whatever
  its item, and its item (if still planned) gets a new task.
Dependencies are resolved against the result: a task waits for the task of
the item it depends on, kept or new.

Nothing here reads or writes storage: `reconcile` decides, and planning.py
writes what it decided inside the generation's one transaction.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import json
import uuid
from collections.abc import Sequence

from rigger_server.domain import EventDraft, EventType, Task, TaskStatus
from rigger_server.errors import InvalidArgument
from rigger_server.planner import TaskPlan
from rigger_server.prd import plain_text


class GenerationMode(enum.IntEnum):
    """What a generation does with a PRD's existing tasks. Numbers match rigger.v1."""

    CREATE = 1
    REPLACE = 2
    SYNC = 3


class Outcome(enum.IntEnum):
    """What a generation did to one task. Numbers match rigger.v1.GenerationOutcome."""

    CREATED = 1
    UPDATED = 2
    KEPT = 3
    ARCHIVED = 4
    LEFT_ALONE = 5


# The fields a kept task takes from its item, in the order changed_fields names them.
SYNCED_FIELDS = ("title", "due_date", "complexity", "reasoning", "context_files", "dependencies")
# Of those, the ones a user can change too (UpdateTask): the PRD's value wins
# only when the PRD changed it since the task was generated.
USER_FIELDS = ("title", "due_date")


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class Identity:
    """An item of a plan: its normalised title and its place among items of that title."""

    key: str
    occurrence: int


def identity_key(title: str) -> str:
    """A title as items are matched by it: plain text, case and spacing ignored."""
    return " ".join(plain_text(title).casefold().split()).rstrip(" .")


def plan_identities(plan: TaskPlan) -> list[Identity]:
    """The identity of each of the plan's items, in plan order."""
    seen: dict[str, int] = {}
    identities = []
    for planned in plan.tasks:
        key = identity_key(planned.title)
        identities.append(Identity(key, seen.get(key, 0)))
        seen[key] = seen.get(key, 0) + 1
    return identities


def item_record(identity: Identity, title: str, due_date: str | None) -> str:
    """Task.prd_item: the item's identity and what was planned for the user's fields."""
    return json.dumps(
        {"key": identity.key, "n": identity.occurrence, "title": title, "due_date": due_date},
        ensure_ascii=False,
        separators=(",", ":"),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Stored:
    identity: Identity
    planned: dict[str, object]


def _stored(task: Task) -> _Stored | None:
    """A task's stored item, or None (none kept, or not readable: then matched by title)."""
    if not task.prd_item:
        return None
    try:
        record = json.loads(task.prd_item)
        identity = Identity(str(record["key"]), int(record["n"]))
        planned = {name: record.get(name) for name in USER_FIELDS}
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None
    return _Stored(identity, planned)


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """One task of the PRD after the generation, and what was done to it."""

    task: Task
    outcome: Outcome
    changed_fields: tuple[str, ...] = ()


@dataclasses.dataclass(slots=True)
class Reconciled:
    """Everything a generation writes, decided; planning.py writes it in one transaction."""

    # (task archived, version it had), top-level tasks first, then their subtasks.
    archived: list[tuple[Task, int]] = dataclasses.field(default_factory=list)
    archive_drafts: list[EventDraft] = dataclasses.field(default_factory=list)
    created: list[Task] = dataclasses.field(default_factory=list)
    create_drafts: list[EventDraft] = dataclasses.field(default_factory=list)
    # (task after, version it had, its events): an UPDATED, or none when only
    # its stored item changes (nothing a client sees, so no new version).
    updated: list[tuple[Task, int, list[EventDraft]]] = dataclasses.field(default_factory=list)
    results: list[Result] = dataclasses.field(default_factory=list)
    # The top-level tasks archived, in creation order.
    archived_ids: list[str] = dataclasses.field(default_factory=list)


def claim(existing: Sequence[Task]) -> tuple[dict[Identity, Task], list[Task]]:
    """Which live top-level task holds each identity, and the live ones holding none.

    Stored identities are claimed first, oldest task first; then tasks
    without one, oldest first, each taking its title's first free place.
    """
    live = [t for t in existing if t.parent_task_id is None and t.status is not TaskStatus.ARCHIVED]
    holders: dict[Identity, Task] = {}
    unclaimed: set[str] = set()
    derived: list[Task] = []
    for task in live:
        stored = _stored(task)
        if stored is None:
            derived.append(task)
        elif stored.identity in holders:
            unclaimed.add(task.id)
        else:
            holders[stored.identity] = task
    # The next place to try for each title: thousands of tasks of one title
    # cost one pass, not one pass each.
    free: dict[str, int] = {}
    for task in derived:
        key = identity_key(task.title)
        occurrence = free.get(key, 0)
        while Identity(key, occurrence) in holders:
            occurrence += 1
        holders[Identity(key, occurrence)] = task
        free[key] = occurrence + 1
    held = {task.id for task in holders.values()}
    return holders, [t for t in live if t.id not in held or t.id in unclaimed]


def new_task(
    prd_id: str,
    plan: TaskPlan,
    index: int,
    identity: Identity,
    task_id: str,
    deps: list[str],
    now: str,
) -> Task:
    """The plan's `index`-th task as a new row of the PRD."""
    planned = plan.tasks[index]
    return Task(
        id=task_id,
        title=planned.title,
        status=TaskStatus.COMPLETED if planned.done else TaskStatus.TODO,
        created_at=now,
        updated_at=now,
        version=1,
        assignee=planned.assignee,
        due_date=planned.due_date,
        source_prd_id=prd_id,
        complexity=planned.complexity,
        reasoning=planned.reasoning,
        context_files=planned.context_files,
        dependencies=tuple(deps),
        prd_item=item_record(identity, planned.title, planned.due_date),
    )


def reconcile(
    prd_id: str,
    plan: TaskPlan,
    existing: Sequence[Task],
    mode: GenerationMode,
    now: str,
) -> Reconciled:
    """Decide what a REPLACE or SYNC generation of `plan` writes (module docstring).

    `existing` is every task of the PRD, archived ones and subtasks too,
    oldest first, as read inside the generation's transaction.
    """
    identities = plan_identities(plan)
    holders, gone = claim(existing)
    made = Reconciled()
    ids: list[str] = []
    kept: dict[int, Task] = {}
    retired: list[Task] = []
    for index, identity in enumerate(identities):
        holder = holders.pop(identity, None)
        if (
            holder is not None
            and mode is GenerationMode.REPLACE
            and holder.status is TaskStatus.TODO
        ):
            retired.append(holder)
            holder = None
        if holder is None:
            ids.append(str(uuid.uuid4()))
        else:
            kept[index] = holder
            ids.append(holder.id)
    gone_ids = {t.id for t in gone} | {t.id for t in holders.values()} | {t.id for t in retired}
    order = {task.id: position for position, task in enumerate(existing)}
    leaving = sorted((t for t in existing if t.id in gone_ids), key=lambda t: order[t.id])
    _archive(made, leaving, existing, prd_id, now)
    results: list[Result] = []
    for index, identity in enumerate(identities):
        deps = [ids[j] for j in plan.tasks[index].dependencies]
        holder = kept.get(index)
        if holder is None:
            task = new_task(prd_id, plan, index, identity, ids[index], deps, now)
            made.created.append(task)
            made.create_drafts.append(
                EventDraft.new(
                    EventType.CREATED,
                    task,
                    now,
                    planner=plan.planner,
                    model=plan.model,
                    prd_id=prd_id,
                )
            )
            results.append(Result(task, Outcome.CREATED))
        else:
            results.append(_sync(made, holder, plan, index, identity, deps, prd_id, now))
    archived_now = {task.id: task for task, _ in made.archived}
    for task in leaving:
        if task.id in archived_now:
            results.append(Result(archived_now[task.id], Outcome.ARCHIVED))
        else:
            results.append(Result(task, Outcome.LEFT_ALONE))
    made.results = results
    return made


def _archive(
    made: Reconciled, leaving: Sequence[Task], existing: Sequence[Task], prd_id: str, now: str
) -> None:
    """Archive the leaving tasks still in TODO, each with its TODO subtasks (any depth)."""
    children: dict[str, list[Task]] = {}
    for task in existing:
        if task.parent_task_id is not None:
            children.setdefault(task.parent_task_id, []).append(task)
    for task in leaving:
        if task.status is not TaskStatus.TODO:
            continue
        made.archived_ids.append(task.id)
        stack = collections.deque([task])
        while stack:
            old = stack.popleft()
            gone = dataclasses.replace(
                old, status=TaskStatus.ARCHIVED, version=old.version + 1, updated_at=now
            )
            made.archived.append((gone, old.version))
            made.archive_drafts.append(
                EventDraft.new(
                    EventType.DELETED,
                    gone,
                    now,
                    previous_status=old.status.contract_name,
                    replaced_by_prd_id=prd_id,
                )
            )
            stack.extend(c for c in children.get(old.id, ()) if c.status is TaskStatus.TODO)


def _sync(
    made: Reconciled,
    task: Task,
    plan: TaskPlan,
    index: int,
    identity: Identity,
    deps: list[str],
    prd_id: str,
    now: str,
) -> Result:
    """A kept task brought in line with its item (module docstring)."""
    planned = plan.tasks[index]
    wanted: dict[str, object] = {
        "title": planned.title,
        "due_date": planned.due_date,
        "complexity": planned.complexity,
        "reasoning": planned.reasoning,
        "context_files": planned.context_files,
        "dependencies": tuple(deps),
    }
    stored = _stored(task)
    changed = []
    for name in SYNCED_FIELDS:
        if getattr(task, name) == wanted[name]:
            continue
        if name in USER_FIELDS and stored is not None and stored.planned[name] == wanted[name]:
            continue  # the PRD did not change it: what the task says now was a person's choice
        changed.append(name)
    record = item_record(identity, planned.title, planned.due_date)
    if not changed:
        if task.prd_item != record:
            # Only the server's own note of the item changes: no new version, no event.
            after = dataclasses.replace(task, prd_item=record)
            made.updated.append((after, task.version, []))
            return Result(after, Outcome.KEPT)
        return Result(task, Outcome.KEPT)
    after = dataclasses.replace(
        task,
        **{name: wanted[name] for name in changed},  # type: ignore[arg-type]
        prd_item=record,
        version=task.version + 1,
        updated_at=now,
    )
    draft = EventDraft.new(
        EventType.UPDATED,
        after,
        now,
        changed_fields=",".join(changed),
        planner=plan.planner,
        model=plan.model,
        prd_id=prd_id,
    )
    made.updated.append((after, task.version, [draft]))
    return Result(after, Outcome.UPDATED, tuple(changed))


def requested_mode(mode: int, replace_existing: bool) -> GenerationMode:
    """The mode a request asks for: `mode`, or (unset) what `replace_existing` says."""
    if mode == 0:
        return GenerationMode.REPLACE if replace_existing else GenerationMode.CREATE
    try:
        chosen = GenerationMode(mode)
    except ValueError:
        names = ", ".join(f"GENERATION_MODE_{m.name}" for m in GenerationMode)
        raise InvalidArgument("mode", f"{mode} is not a GenerationMode; use {names}") from None
    if replace_existing and chosen is not GenerationMode.REPLACE:
        raise InvalidArgument(
            "replace_existing",
            f"is set, but mode is GENERATION_MODE_{chosen.name}; set only one of them",
        )
    return chosen
