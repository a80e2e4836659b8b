"""The harness protocol's framing: each message is preceded by its length as a protobuf varint.

The one implementation for the Python side of the pipe: the runner reads
observations with `read_frame` (asyncio), the Python executor reads
instructions with `FrameReader` (a blocking file descriptor), and both write
with `encode_frame`. The Go and TypeScript executors use their protobuf
runtime's size-delimited helpers, which speak the same format.
"""

from __future__ import annotations

import asyncio
import os

from google.protobuf.internal.encoder import _VarintBytes

# A uint64 takes at most ten varint bytes; a longer prefix is garbage.
MAX_PREFIX_BYTES = 10


class FramingError(Exception):
    """The byte stream ended inside a frame, or its length prefix is malformed."""


def encode_varint(value: int) -> bytes:
    """Encode a non-negative integer as a protobuf base-128 varint (protobuf's own encoder)."""
    if value < 0:
        raise ValueError(f"a varint holds no negative number: {value}")
    return _VarintBytes(value)


def encode_frame(payload: bytes) -> bytes:
    """One frame: the payload's length as a varint, then the payload."""
    return encode_varint(len(payload)) + payload


class _Prefix:
    """A length prefix being read, one byte at a time."""

    def __init__(self) -> None:
        self.length = 0
        self.count = 0

    def add(self, byte: int) -> bool:
        """Take one byte; True once the prefix is complete."""
        if self.count == MAX_PREFIX_BYTES:
            raise FramingError(f"a length prefix longer than {MAX_PREFIX_BYTES} bytes")
        self.length |= (byte & 0x7F) << (7 * self.count)
        self.count += 1
        return not byte & 0x80

    def ended(self) -> None:
        """The stream ended here: clean between frames, an error inside a prefix."""
        if self.count:
            raise FramingError("the stream ended inside a length prefix")


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """One frame's payload, or None at a clean end of the stream."""
    prefix = _Prefix()
    while True:
        byte = await reader.read(1)
        if not byte:
            prefix.ended()
            return None
        if prefix.add(byte[0]):
            break
    try:
        return await reader.readexactly(prefix.length)
    except asyncio.IncompleteReadError:
        raise FramingError(f"the stream ended inside a {prefix.length}-byte frame") from None


class FrameReader:
    """Reads frames from a file descriptor, blocking.

    It reads the raw descriptor with os.read rather than sys.stdin.buffer: a
    thread blocked inside a BufferedReader holds its lock, and the interpreter
    aborts at exit when a daemon thread still holds it.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()

    def _fill(self, size: int) -> bool:
        while len(self._buffer) < size:
            chunk = os.read(self._fd, 65536)
            if not chunk:
                return False
            self._buffer.extend(chunk)
        return True

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read(self) -> bytes | None:
        """One frame's payload; None at a clean end of input."""
        prefix = _Prefix()
        while True:
            if not self._fill(1):
                prefix.ended()
                return None
            if prefix.add(self._take(1)[0]):
                break
        if not self._fill(prefix.length):
            raise FramingError(f"the stream ended inside a {prefix.length}-byte frame")
        return self._take(prefix.length)
