"""In-process fixtures: the server's parts on a temporary SQLite file, no gRPC process."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator, Iterator

import pytest
from rigger_server import wire
from rigger_server.events import Broadcaster, EventFilter, Subscription
from rigger_server.sqlite_store import SqliteStore
from rigger_server.tasks import TaskBook


@pytest.fixture
def db(tmp_path: pathlib.Path) -> pathlib.Path:
    """Where the test's database file lives."""
    return tmp_path / "tasks.db"


@pytest.fixture
def store(db: pathlib.Path) -> Iterator[SqliteStore]:
    """A fresh store on a temporary file, encoding events as the server does."""
    store = SqliteStore(db, wire.encode_event)
    yield store
    store.close()


@pytest.fixture
def broadcaster() -> Broadcaster:
    """A broadcaster with the server's default buffer."""
    return Broadcaster()


@pytest.fixture
async def book(
    db: pathlib.Path, broadcaster: Broadcaster, tmp_path: pathlib.Path
) -> AsyncIterator[TaskBook]:
    """A TaskBook on its own store; `tmp_path` is its project root."""
    book = TaskBook(SqliteStore(db, wire.encode_event), broadcaster, tmp_path)
    yield book
    await book.close()


@pytest.fixture
def watch(broadcaster: Broadcaster) -> Subscription:
    """A subscription to everything `broadcaster` publishes from now on."""
    return broadcaster.subscribe(EventFilter())
