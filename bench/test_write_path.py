"""The write path: AddTask end to end over loopback, and raw SqliteStore commits.

Run with `pytest bench/test_write_path.py`; never part of the normal test run.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterator

import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from rigger_server import wire
from rigger_server.domain import Task
from rigger_server.sqlite_store import SqliteStore

from bench import payload, samples
from bench.conftest import BackgroundLoop

PAYLOADS = [250, 2000]
ROUNDS = 200  # each round is one fsync'd commit: a few ms, so this is seconds


@pytest.mark.parametrize("payload_bytes", PAYLOADS)
def test_add_task_loopback(
    benchmark,
    background_loop: BackgroundLoop,
    rigger_stub: rigger_pb2_grpc.RiggerServiceStub,
    payload_bytes: int,
) -> None:
    """One AddTask call: client, loopback, validation, writer thread, commit, broadcast, reply."""
    request = pb.AddTaskRequest(title=payload.title(0, payload_bytes))

    async def call() -> None:
        await rigger_stub.AddTask(request)

    def add_task() -> None:
        background_loop.run(call())

    benchmark.pedantic(add_task, rounds=ROUNDS, warmup_rounds=10)


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteStore]:
    """A SqliteStore as the server opens it: WAL, synchronous=FULL."""
    path: pathlib.Path = tmp_path_factory.mktemp("store") / "tasks.db"
    opened = SqliteStore(path, wire.encode_event)
    yield opened
    opened.close()


@pytest.mark.parametrize("payload_bytes", PAYLOADS)
def test_sqlite_insert_commit(benchmark, store: SqliteStore, payload_bytes: int) -> None:
    """insert_task: one transaction with the task row and its CREATED event row."""

    def fresh() -> tuple[tuple[Task, list], dict]:
        task = samples.task(payload_bytes)
        return (task, [samples.draft(task)]), {}

    benchmark.pedantic(store.insert_task, setup=fresh, rounds=ROUNDS, warmup_rounds=5)


@pytest.mark.parametrize("payload_bytes", PAYLOADS)
def test_sqlite_replace_commit(benchmark, store: SqliteStore, payload_bytes: int) -> None:
    """replace_task: the compare-and-swap update of one task plus its event row."""
    current = samples.task(payload_bytes)
    store.insert_task(current, [samples.draft(current)])

    def next_version() -> tuple[tuple[Task, int, list], dict]:
        nonlocal current
        updated = dataclasses.replace(current, version=current.version + 1)
        args = (updated, current.version, [samples.draft(updated)])
        current = updated
        return args, {}

    benchmark.pedantic(store.replace_task, setup=next_version, rounds=ROUNDS, warmup_rounds=5)
