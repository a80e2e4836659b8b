"""The processes of a `rig grpc --workers N`: its workers, and the one holding a connection."""

from __future__ import annotations

import contextlib

import psutil

from testkit.serverproc import ServerProcess


def worker_pids(server: ServerProcess) -> set[int]:
    """The processes listening on the server's port: its workers (never the supervisor)."""
    assert server.proc is not None
    found: set[int] = set()
    for child in psutil.Process(server.proc.pid).children():
        with contextlib.suppress(psutil.NoSuchProcess):
            for conn in child.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr.port == server.port:
                    found.add(child.pid)
    return found


def connection_holder(workers: set[int], server_port: int, client_port: int) -> int | None:
    """The worker holding the server side of the connection from `client_port`."""
    for pid in workers:
        for conn in psutil.Process(pid).net_connections(kind="tcp"):
            if conn.laddr.port == server_port and conn.raddr and conn.raddr.port == client_port:
                return pid
    return None
