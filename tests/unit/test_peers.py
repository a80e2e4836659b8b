"""Announcements between servers on one database: a number per datagram, no configuration."""

from __future__ import annotations

import asyncio
import pathlib
import socket
from collections.abc import AsyncIterator

import pytest
from rigger_server import peers as peers_module
from rigger_server.peers import Peers, peer_directory

from unit.drafts import WAIT


@pytest.fixture
def directory(tmp_path: pathlib.Path) -> pathlib.Path:
    return peer_directory(tmp_path / "tasks.db")


@pytest.fixture(autouse=True)
def list_peers_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-read the directory on every announcement, so a peer that joins is seen at once."""
    monkeypatch.setattr(peers_module, "REFRESH_SECONDS", -1.0)


async def started(directory: pathlib.Path, name: str, heard: asyncio.Queue[int]) -> Peers:
    peer = Peers(directory)
    peer.name = f"{name}.sock"  # one process plays several servers here
    await peer.start(heard.put_nowait)
    return peer


@pytest.fixture
async def two(directory) -> AsyncIterator[tuple[Peers, asyncio.Queue[int]]]:
    """A server announcing, and what a second server on the same database hears."""
    heard: asyncio.Queue[int] = asyncio.Queue()
    ours = await started(directory, "ours", asyncio.Queue())
    theirs = await started(directory, "theirs", heard)
    yield ours, heard
    await theirs.close()
    await ours.close()


def test_the_peer_directory_sits_beside_the_database(tmp_path):
    assert peer_directory(tmp_path / "tasks.db") == tmp_path / "tasks.db-peers"


async def test_an_announced_sequence_reaches_every_other_server(two):
    ours, heard = two
    ours.announce(7)
    ours.announce(9)
    assert [await asyncio.wait_for(heard.get(), WAIT) for _ in range(2)] == [7, 9]


async def test_a_server_does_not_hear_its_own_announcements(directory):
    heard: asyncio.Queue[int] = asyncio.Queue()
    alone = await started(directory, "alone", heard)
    try:
        alone.announce(3)
        other = await started(directory, "other", asyncio.Queue())
        other.announce(4)  # sent after 3: once 4 is heard, 3 would have been too
        assert await asyncio.wait_for(heard.get(), WAIT) == 4
        await other.close()
    finally:
        await alone.close()


async def test_a_socket_left_by_a_killed_server_is_removed_by_the_next_announcement(two, directory):
    ours, _ = two
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(directory / "killed.sock"))
    dead.close()  # the file stays, nobody reads it: as after SIGKILL
    ours.announce(1)
    assert not (directory / "killed.sock").exists()


async def test_closing_removes_the_servers_socket(directory):
    peer = await started(directory, "leaving", asyncio.Queue())
    assert [p.name for p in directory.iterdir()] == ["leaving.sock"]
    await peer.close()
    await peer.close()
    assert list(directory.iterdir()) == []


async def test_an_unstarted_server_announces_nothing(directory):
    Peers(directory).announce(1)  # no socket yet: nothing to send from, no error
