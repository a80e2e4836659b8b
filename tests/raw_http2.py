"""A hostile HTTP/2 client: gRPC calls opened with headers and never a body.

A gRPC client library cannot stage this: it sends each request as soon as the
call starts, and keeps to the stream limit the server advertises. This one
speaks HTTP/2 through `h2` and does neither.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings

REFUSED = "REFUSED_STREAM"


class _IgnoresStreamLimit(h2.connection.H2Connection):
    """h2, minus its check of the server's stream limit: it opens as many as it is told."""

    @property
    def open_outbound_streams(self) -> int:
        return 0


class RawConnection:
    """One plaintext HTTP/2 connection to a gRPC server, handshake done.

    `outcomes` maps each stream the server has answered to how: REFUSED
    (reset before it started) or the `grpc-status` it answered with.
    """

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.port = port
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._h2 = _IgnoresStreamLimit(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.outcomes: dict[int, str] = {}
        # Streams the server reset. An answered call whose client never ended
        # its side is reset after its trailers.
        self.reset: set[int] = set()
        self.bodies: dict[int, int] = {}  # stream -> response bytes received
        self.server_settings: dict[int, int] = {}
        self._pings: set[bytes] = set()
        self._h2.initiate_connection()
        self._flush()
        while not self.server_settings:
            self._read_once()
        # Our acknowledgement of the server's settings goes out before any
        # stream: from then on the server enforces its stream limit.
        self._flush()

    @property
    def max_concurrent_streams(self) -> int:
        """The stream limit the server advertised."""
        return self.server_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS]

    def open(self, path: str, count: int, token: str | None = None) -> list[int]:
        """Open `count` calls of `path` (e.g. /rigger.v1.RiggerService/AddTask): headers only."""
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", path.encode()),
            (b":authority", f"127.0.0.1:{self.port}".encode()),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ]
        if token is not None:
            headers.append((b"authorization", f"Bearer {token}".encode()))
        opened = []
        for _ in range(count):
            stream = self._h2.get_next_available_stream_id()
            self._h2.send_headers(stream, headers)
            opened.append(stream)
            if len(opened) % 100 == 0:
                self._flush()
        self._flush()
        return opened

    def sync(self, within: float = 30.0) -> None:
        """Wait until the server has read everything sent so far (a PING and its answer).

        The server reads frames in order, and resets the streams it refuses
        while reading them, before it answers a PING sent after them.
        """
        payload = time.monotonic_ns().to_bytes(8, "big")
        self._pings.add(payload)
        self._h2.ping(payload)
        self._flush()
        self.read_until(lambda: payload not in self._pings, within)

    def read_until(self, done: Callable[[], bool], within: float = 30.0) -> None:
        """Read the server's frames until `done()` is true; fail after `within` seconds."""
        deadline = time.monotonic() + within
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"not done within {within} s: {self.summary()}")
            self._sock.settimeout(remaining)
            self._read_once()

    def finished(self, streams: Iterable[int]) -> bool:
        """True once the server is done with each of `streams`: refused, or answered and reset."""
        return all(stream in self.outcomes and stream in self.reset for stream in streams)

    def summary(self) -> dict[str, int]:
        """How many streams ended which way."""
        counts: dict[str, int] = {}
        for outcome in self.outcomes.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    def close(self) -> None:
        """Close the TCP connection."""
        self._sock.close()

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data:
            self._sock.sendall(data)

    def _read_once(self) -> None:
        data = self._sock.recv(1 << 20)
        if not data:
            raise ConnectionError(f"the server closed the connection: {self.summary()}")
        for event in self._h2.receive_data(data):
            self._handle(event)
        self._flush()  # settings and ping acknowledgements, window updates

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RemoteSettingsChanged):
            for code, change in event.changed_settings.items():
                self.server_settings[int(code)] = change.new_value
        elif isinstance(event, h2.events.PingAckReceived):
            self._pings.discard(event.ping_data)
        elif isinstance(event, h2.events.StreamReset):
            self.reset.add(event.stream_id)
            if event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM:
                self.outcomes.setdefault(event.stream_id, REFUSED)
        elif isinstance(event, h2.events.DataReceived):
            self.bodies[event.stream_id] = self.bodies.get(event.stream_id, 0) + len(event.data)
            self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
            status = dict(event.headers).get(b"grpc-status")
            if status is not None:  # trailers, or a trailers-only answer
                self.outcomes[event.stream_id] = status.decode()
