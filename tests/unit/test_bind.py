"""Binding the server's port on every loopback address, in process.

`--port 0` takes a free port on the first address ([::1]) and the same on the
others; another process may hold it on 127.0.0.1. These tests hold that port
themselves and make it the first one tried, so the collision is certain.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import grpc
import pytest
from rigger_server.app import PORT_ATTEMPTS, PortInUse, bind, loopbacks
from rigger_server.core_log import bind_failures_held_back


@pytest.fixture
def held() -> Iterator[int]:
    """A port another process (this test) listens on at 127.0.0.1 only."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


class Servers:
    """Makes bare servers for `bind`, counting them, and stops the one it returns."""

    def __init__(self) -> None:
        self.made: list[grpc.aio.Server] = []

    def __call__(self) -> grpc.aio.Server:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        self.made.append(server)
        return server


def free_on(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host.strip("[]"), port))
        except OSError:
            return False
    return True


async def test_port_0_taken_on_another_loopback_retries_with_a_fresh_port(held):
    servers = Servers()
    server, addresses, port = await bind(servers, loopbacks(), 0, None, first_tries=(held,))
    try:
        await server.start()
        assert port not in (0, held)
        assert addresses == [f"{host}:{port}" for host in loopbacks()]
        assert len(servers.made) == 2
        # The first try's server let go of what it had bound ([::1]:held).
        assert all(free_on(host, held) for host in loopbacks() if host != "127.0.0.1")
    finally:
        await server.stop(None)


async def test_port_0_gives_up_after_bounded_attempts_naming_the_port_it_tried(held):
    servers = Servers()
    with pytest.raises(PortInUse) as failed:
        await bind(servers, loopbacks(), 0, None, first_tries=[held] * (PORT_ATTEMPTS + 5))
    assert len(servers.made) == PORT_ATTEMPTS
    assert failed.value.port == held
    assert failed.value.address == f"127.0.0.1:{held}"


async def test_a_taken_port_that_was_asked_for_is_not_retried(held):
    servers = Servers()
    with pytest.raises(PortInUse) as failed:
        await bind(servers, loopbacks(), held, None)
    assert len(servers.made) == 1
    assert failed.value.port == held
    assert all(free_on(host, held) for host in loopbacks() if host != "127.0.0.1")


async def test_a_taken_port_leaves_no_line_of_grpc_cores_on_stderr(held, capfd):
    with pytest.raises(PortInUse):
        await bind(Servers(), ["127.0.0.1"], held, None)
    assert "add_port" not in capfd.readouterr().err


def test_other_lines_written_while_binding_reach_stderr_in_order(capfd):
    with bind_failures_held_back():
        os.write(2, b"first\n")
        os.write(2, b"E0000 add_port.cc:83] Failed to add port to server\n")
        os.write(2, b"last, without a newline")
    assert capfd.readouterr().err == "first\nlast, without a newline"
