"""Independent servers on one SQLite file publish one log: every subscriber sees every event.

Two `rig grpc` processes, started separately on the same database with no
configuration, each publish the other's commits as well as their own.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Iterator

import grpc
import pytest
from rigger.v1 import rigger_pb2_grpc
from streams import CREATED, add, read_events, sequences, subscribe_live

from testkit.serverproc import ServerProcess

EVENTS = 200


@pytest.fixture
def two_servers(tmp_path: pathlib.Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two independent servers, each in its own directory, on one database file."""
    db = tmp_path / "shared" / "tasks.db"
    servers = []
    for name in ("one", "two"):
        root = tmp_path / name
        root.mkdir()
        servers.append(ServerProcess(root, db=db).start())
    try:
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


async def test_each_servers_subscribers_get_every_event_written_through_either(two_servers):
    one, two = two_servers
    async with (
        grpc.aio.insecure_channel(one.address) as to_one,
        grpc.aio.insecure_channel(two.address) as to_two,
    ):
        stubs = [rigger_pb2_grpc.RiggerServiceStub(c) for c in (to_one, to_two)]
        watchers = [await subscribe_live(stub) for stub in stubs]
        # Writes alternate between the servers, two writers at a time.
        await asyncio.gather(
            *(add(stubs[i % 2], f"task {i}") for i in range(EVENTS // 2)),
            *(add(stubs[(i + 1) % 2], f"task {i}") for i in range(EVENTS // 2, EVENTS)),
        )
        for watcher in watchers:
            events = await read_events(watcher, EVENTS)
            assert sequences(events) == list(range(1, EVENTS + 1))
            assert {e.event_type for e in events} == {CREATED}
            watcher.cancel()


def test_a_server_leaves_no_socket_behind_when_it_stops(tmp_path: pathlib.Path):
    server = ServerProcess(tmp_path).start()
    peers = server.db.with_name(server.db.name + "-peers")
    assert [p.suffix for p in peers.iterdir()] == [".sock"]
    server.stop()
    assert list(peers.iterdir()) == []
