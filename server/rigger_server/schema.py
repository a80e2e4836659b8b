"""What the SQLite and PostgreSQL stores share: their columns, rows <-> records, the ledger.

Each store keeps its own SQL: its DDL, its placeholders, and how it stores a
list (JSON text on SQLite, `text[]` on PostgreSQL). What does not depend on
the dialect is written here once:

- which columns a table has: one per field of its record, of the same name
  (`Table`);
- turning a record into a row and back, given the dialect's way with lists;
- the migration ledger: every change of the schema, in order, with the
  version each store records once it is applied (`LEDGER`, `migrations`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, Literal, TypeVar

from rigger_server.domain import (
    ComprehensionTestRecord,
    EnhancementRecord,
    Event,
    EventDraft,
    EventType,
    Prd,
    Task,
    TaskStatus,
)

R = TypeVar("R")
T = TypeVar("T")

# How a store keeps a list (the record's tuple) in a column, and reads it back.
StoreList = Callable[[tuple[str, ...]], object]
LoadList = Callable[[Any], Sequence[str]]


@dataclasses.dataclass(frozen=True, slots=True)
class Table(Generic[R]):
    """How one kind of record is stored: a column per field, of the same name, in order."""

    record: type[R]
    columns: tuple[str, ...]
    # Fields held as tuples in the record, as lists in the row.
    lists: frozenset[str]
    # Fields whose stored value the record keeps as another type (an enum).
    typed: Mapping[str, Callable[[Any], Any]]

    @classmethod
    def of(
        cls,
        record: type[R],
        *,
        derived: frozenset[str] = frozenset(),
        typed: Mapping[str, Callable[[Any], Any]] | None = None,
    ) -> Table[R]:
        """The table of `record`, without the `derived` fields (computed when read)."""
        fields = [f for f in dataclasses.fields(record) if f.name not in derived]  # type: ignore[arg-type]
        return cls(
            record=record,
            columns=tuple(f.name for f in fields),
            lists=frozenset(f.name for f in fields if str(f.type).startswith("tuple[")),
            typed=typed or {},
        )

    def row(self, record: R, store_list: StoreList) -> tuple[object, ...]:
        """`record`'s values in column order, each list as `store_list` makes it."""
        lists = self.lists
        return tuple(
            store_list(getattr(record, name)) if name in lists else getattr(record, name)
            for name in self.columns
        )

    def record_from(self, row: Sequence[Any], load_list: LoadList, **derived: Any) -> R:
        """The record a row of `columns` holds, with the `derived` fields given."""
        values = dict(zip(self.columns, row, strict=True))
        for name in self.lists:
            values[name] = tuple(load_list(values[name]))
        for name, kind in self.typed.items():
            values[name] = kind(values[name])
        return self.record(**values, **derived)

    def record_from_values(self, values: dict[str, Any]) -> R:
        """The record from every one of its fields by name, lists as lists (a JSON copy)."""
        for field in dataclasses.fields(self.record):  # type: ignore[arg-type]
            if str(field.type).startswith("tuple["):
                values[field.name] = tuple(values[field.name])
        for name, kind in self.typed.items():
            values[name] = kind(values[name])
        return self.record(**values)


# subtask_ids is derived from the children's parent_task_id when read, so
# adding a subtask never rewrites (or re-versions) its parent; its column
# would also make every read of a task read its siblings.
TASKS = Table.of(Task, derived=frozenset({"subtask_ids"}), typed={"status": TaskStatus})
PRDS = Table.of(Prd)
ENHANCEMENTS = Table.of(EnhancementRecord)
COMPREHENSION_TESTS = Table.of(ComprehensionTestRecord)

# The event log's columns a read returns (domain.Event), and those a commit
# writes (event_row).
EVENT_COLUMNS = ("sequence", "event_type", "task_id", "assignee", "payload")
EVENT_INSERT_COLUMNS = (
    "sequence",
    "event_id",
    "timestamp",
    "event_type",
    "task_id",
    "assignee",
    "payload",
)


def event_row(draft: EventDraft, event: Event) -> tuple[object, ...]:
    """The values of EVENT_INSERT_COLUMNS for `draft`, committed as `event`."""
    return (
        event.sequence,
        draft.event_id,
        draft.timestamp,
        int(event.event_type),
        event.task_id,
        event.assignee,
        event.payload,
    )


def event_from_row(row: Sequence[Any]) -> Event:
    """The event a row of EVENT_COLUMNS holds."""
    return Event(row[0], EventType(row[1]), row[2], row[3], bytes(row[4]))


# --- the migration ledger ---------------------------------------------------

Dialect = Literal["sqlite", "postgres"]


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    """One change of the schema, with the version each store records once it is applied.

    A store's version is None for a change it never needed: PostgreSQL's
    first schema already had what SQLite's second step added.
    """

    description: str
    sqlite: int | None
    postgres: int | None


FIRST_SCHEMA = Step("tasks, the event log and its head, PRDs", sqlite=1, postgres=1)
# The log keeps each event's encoded bytes (what every publisher and replay
# sends) and just what a subscription filter needs, instead of a JSON copy of
# the task that had to be decoded and re-encoded on every read.
EVENT_PAYLOADS = Step("the event log keeps each event's encoded bytes", sqlite=2, postgres=None)
SUBTASK_COUNT = Step(
    "each task counts its subtasks, so adding one never reads its siblings", sqlite=3, postgres=2
)
PLANNING = Step(
    "planning: PRDs keep their markdown and file, enhancements and comprehension tests",
    sqlite=4,
    postgres=3,
)
# A generated task keeps the PRD item it was made for (Task.prd_item), so
# generating the PRD again matches items to their tasks, renamed or not.
PRD_ITEM = Step(
    "a generated task keeps the PRD item it was made for, so regenerating matches it",
    sqlite=5,
    postgres=4,
)

# Every change, in the order it is applied. Append a new one with the next
# version of each store, and give each store its change for it; never edit
# or reorder one that shipped: databases in the field record these numbers
# (SQLite in PRAGMA user_version; PostgreSQL in rigger.schema_migrations,
# with the description).
LEDGER: tuple[Step, ...] = (FIRST_SCHEMA, EVENT_PAYLOADS, SUBTASK_COUNT, PLANNING, PRD_ITEM)


@dataclasses.dataclass(frozen=True, slots=True)
class Migration(Generic[T]):
    """One step as a store applies it: the version it records, and its change."""

    version: int
    description: str
    change: T


def migrations(dialect: Dialect, changes: Mapping[Step, T]) -> tuple[Migration[T], ...]:
    """A store's migrations in order: the ledger's steps it records, with its `changes`.

    Raises ValueError, as the store's module is imported, if `changes` lacks
    a step the store records or has one it does not, or if the store's
    versions are not 1, 2, 3, … in ledger order.
    """
    steps = [step for step in LEDGER if getattr(step, dialect) is not None]
    if set(changes) != set(steps):
        missing = [s.description for s in steps if s not in changes]
        extra = [s.description for s in changes if s not in steps]
        raise ValueError(f"{dialect} migrations: missing {missing}, not in its ledger {extra}")
    versions = [getattr(step, dialect) for step in steps]
    if versions != list(range(1, len(steps) + 1)):
        raise ValueError(f"{dialect} versions must be 1, 2, 3, … in ledger order: {versions}")
    return tuple(
        Migration(getattr(step, dialect), step.description, changes[step]) for step in steps
    )
