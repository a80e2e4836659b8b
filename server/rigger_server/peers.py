"""Announcements between servers sharing one event log: "the log now holds events up to N".

Every server process on a database (the workers of `rig grpc --workers N`, or
independent `rig grpc` runs pointed at the same file) binds a Unix datagram
socket in the log's peer directory, `<database>-peers/`, and after every
commit sends its newest sequence to every other socket there. No
configuration: being on the same database is what makes servers peers.

A datagram carries only a number: the event log stays the single source of
truth, and a lost datagram costs latency, not events (the log tail also checks
the log on a timer). A socket left behind by a killed server refuses
datagrams and is removed by the next sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import pathlib
import socket
import struct
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

_SEQUENCE = struct.Struct("<Q")
_SUFFIX = ".sock"
# How long the list of peers is trusted before the directory is read again: a
# server that joins is announced to within this delay (its tail's own timer
# covers the gap).
REFRESH_SECONDS = 0.5
# Unix socket paths are limited to ~108 bytes; longer ones are reached through
# the directory's descriptor instead.
_MAX_PATH = 100


def peer_directory(db_path: pathlib.Path) -> pathlib.Path:
    """Where the servers of the database at `db_path` find each other."""
    return db_path.with_name(db_path.name + "-peers")


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, on_seen: Callable[[int], None]) -> None:
        self._on_seen = on_seen

    def datagram_received(self, data: bytes, addr: object) -> None:
        if len(data) == _SEQUENCE.size:
            self._on_seen(_SEQUENCE.unpack(data)[0])


class Peers:
    """This server's socket in the peer directory: announces its commits, hears the others'."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = directory
        self.name = f"{os.getpid()}{_SUFFIX}"
        self._dir_fd: int | None = None
        self._sock: socket.socket | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._others: list[str] = []
        self._listed = float("-inf")

    def _address(self, name: str) -> str:
        path = str(self.directory / name)
        if len(path.encode()) < _MAX_PATH or self._dir_fd is None:
            return path
        return f"/proc/self/fd/{self._dir_fd}/{name}"

    async def start(
        self,
        on_seen: Callable[[int], None],
        on_reachable: Callable[[bool], None] = lambda reachable: None,
    ) -> None:
        """Bind this server's socket and pass every announced sequence to `on_seen`.

        A file on this host never becomes unreachable, so `on_reachable` is
        never called. Raises OSError when the directory cannot be made or the
        socket bound.
        """
        sock = self._bind()
        try:
            loop = asyncio.get_running_loop()
            self._transport, _ = await loop.create_datagram_endpoint(
                lambda: _Receiver(on_seen), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        self._sock = sock

    def _bind(self) -> socket.socket:
        self.directory.mkdir(exist_ok=True)
        self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        address = self._address(self.name)
        # A killed earlier process with this pid may have left it.
        pathlib.Path(address).unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(address)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def _peers(self) -> list[str]:
        now = time.monotonic()
        if now - self._listed > REFRESH_SECONDS:
            self._listed = now
            try:
                names = [path.name for path in self.directory.iterdir()]
            except OSError:
                names = []
            self._others = [n for n in names if n.endswith(_SUFFIX) and n != self.name]
        return self._others

    def announce(self, sequence: int) -> None:
        """Tell every other server on the log that it holds events up to `sequence`."""
        if self._sock is None:
            return
        data = _SEQUENCE.pack(sequence)
        for name in self._peers():
            address = self._address(name)
            try:
                self._sock.sendto(data, address)
            except ConnectionRefusedError:
                # Nobody reads it any more: a server that was killed.
                with contextlib.suppress(OSError):
                    pathlib.Path(address).unlink()
                self._listed = float("-inf")
            except OSError as exc:
                # Gone meanwhile, or its buffer is full: its periodic check
                # of the log picks the events up instead.
                if exc.errno not in (errno.ENOENT, errno.EAGAIN, errno.ENOBUFS):
                    log.warning("announcing to %s failed: %s", name, exc)

    async def close(self) -> None:
        """Close and remove this server's socket."""
        self.remove()

    def remove(self) -> None:
        """Close and remove this server's socket, from outside the event loop too."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._sock is not None:
            with contextlib.suppress(OSError):
                pathlib.Path(self._address(self.name)).unlink()
            self._sock = None
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None
