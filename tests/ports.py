"""Ports for tests that need an address already taken."""

from __future__ import annotations

import socket


def listening_on_both_loopbacks() -> tuple[list[socket.socket], int]:
    """Listening sockets on 127.0.0.1 and ::1 sharing one free port."""
    for _ in range(20):
        v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        v4.bind(("127.0.0.1", 0))
        port = v4.getsockname()[1]
        v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            v6.bind(("::1", port))
        except OSError:
            v4.close()
            v6.close()
            continue
        for s in (v4, v6):
            s.listen()
        return [v4, v6], port
    raise RuntimeError("no port free on both loopbacks")
