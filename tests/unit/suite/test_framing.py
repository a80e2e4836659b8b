"""The harness protocol's framing: varint-length-prefixed messages, read and written one way."""

from __future__ import annotations

import asyncio
import os

import pytest

from conformance.executors.framing import (
    FrameReader,
    FramingError,
    encode_frame,
    encode_varint,
    read_frame,
)

LENGTHS = [0, 1, 127, 128, 300, 16_383, 16_384, 70_000]


def _pipe_reader(data: bytes) -> FrameReader:
    read_fd, write_fd = os.pipe()
    # Each test writes less than a pipe buffer, so this never blocks.
    os.write(write_fd, data)
    os.close(write_fd)
    return FrameReader(read_fd)


def _stream_reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def test_varints_are_protobuf_base_128():
    assert encode_varint(0) == b"\x00"
    assert encode_varint(127) == b"\x7f"
    assert encode_varint(128) == b"\x80\x01"
    assert encode_varint(300) == b"\xac\x02"
    assert encode_varint(2**64 - 1) == b"\xff" * 9 + b"\x01"


def test_negative_lengths_cannot_be_encoded():
    with pytest.raises(ValueError):
        encode_varint(-1)


def test_frames_round_trip_through_a_file_descriptor():
    payloads = [bytes([n % 251]) * n for n in LENGTHS[:-1]]  # the last would fill the pipe
    reader = _pipe_reader(b"".join(encode_frame(p) for p in payloads))
    assert [reader.read() for _ in payloads] == payloads
    assert reader.read() is None


async def test_frames_round_trip_through_an_asyncio_stream():
    payloads = [bytes([n % 251]) * n for n in LENGTHS]
    reader = _stream_reader(b"".join(encode_frame(p) for p in payloads))
    assert [await read_frame(reader) for _ in payloads] == payloads
    assert await read_frame(reader) is None


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x80", "inside a length prefix"),
        (b"\x05abc", "inside a 5-byte frame"),
        (b"\xff" * 11, "longer than 10 bytes"),
    ],
)
async def test_a_broken_stream_is_a_framing_error_for_both_readers(data, problem):
    with pytest.raises(FramingError, match=problem):
        _pipe_reader(data).read()
    with pytest.raises(FramingError, match=problem):
        await read_frame(_stream_reader(data))
