"""Announcements between worker processes: "the log now holds events up to N".

Each worker binds one Unix datagram socket in a directory the supervisor made,
and after every commit sends its newest sequence to the others. A datagram
carries only a number: the event log in SQLite stays the single source of
truth, and a dropped datagram costs latency, not events (the log tail also
checks the log on a timer).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import pathlib
import socket
import struct
from collections.abc import Callable

_SEQUENCE = struct.Struct("<Q")


@dataclasses.dataclass(frozen=True, slots=True)
class PeerGroup:
    """Where the workers' sockets live, and which worker this is."""

    directory: pathlib.Path
    index: int
    count: int

    def socket_path(self, index: int) -> pathlib.Path:
        """The datagram socket of worker `index`."""
        return self.directory / f"worker-{index}.sock"


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, on_seen: Callable[[int], None]) -> None:
        self._on_seen = on_seen

    def datagram_received(self, data: bytes, addr: object) -> None:
        if len(data) == _SEQUENCE.size:
            self._on_seen(_SEQUENCE.unpack(data)[0])


class Peers:
    """This worker's datagram socket: announces its commits, hears the others'."""

    def __init__(self, group: PeerGroup) -> None:
        self.group = group
        self._others = [str(group.socket_path(i)) for i in range(group.count) if i != group.index]
        self._sock: socket.socket | None = None
        self._transport: asyncio.BaseTransport | None = None

    async def start(self, on_seen: Callable[[int], None]) -> None:
        """Bind this worker's socket and pass every announced sequence to `on_seen`."""
        path = self.group.socket_path(self.group.index)
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        sock.setblocking(False)
        self._sock = sock
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Receiver(on_seen), sock=sock
        )

    def announce(self, sequence: int) -> None:
        """Tell every other worker that the log holds events up to `sequence`."""
        if self._sock is None:
            return
        data = _SEQUENCE.pack(sequence)
        for peer in self._others:
            # Not bound yet, gone, or its buffer is full: the peer's periodic
            # check of the log picks the events up instead.
            with contextlib.suppress(OSError):
                self._sock.sendto(data, peer)

    def close(self) -> None:
        """Close the socket."""
        if self._transport is not None:
            self._transport.close()
        self._sock = None
