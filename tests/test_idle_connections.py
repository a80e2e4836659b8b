"""Idle connections cannot lock out a valid client.

A server starts by raising its soft open-file limit to the hard one, closes
a connection that has not completed its handshake after
--handshake-timeout-seconds, and accepts at most the open-file limit less
RESERVED_FILES connections at once, so its own files always have descriptors.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import time

import grpc
import psutil
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc

from testkit.serverproc import RIG, ServerProcess

HANDSHAKE_SECONDS = 2.0
SLACK_SECONDS = 5.0


def with_file_limit(soft: int, hard: int) -> tuple[str, ...]:
    """`rig`, run with these soft and hard open-file limits."""
    script = f'ulimit -S -n {soft} && ulimit -H -n {hard} && exec "$@"'
    return ("sh", "-c", script, "sh", *RIG)


def test_the_soft_open_file_limit_is_raised_to_the_hard_limit(project):
    _, ours = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard = 4096 if ours == resource.RLIM_INFINITY else min(ours, 4096)
    server = ServerProcess(project, command=with_file_limit(256, hard)).start()
    try:
        limits = psutil.Process(server.proc.pid).rlimit(psutil.RLIMIT_NOFILE)
    finally:
        server.stop()
    assert tuple(limits) == (hard, hard)


def idle_connections(port: int, count: int) -> list[socket.socket]:
    """TCP connections that never send a byte."""
    opened = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        opened.append(sock)
    return opened


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass  # the server's SETTINGS frame, then the end
    except TimeoutError:
        return False
    except OSError:
        pass  # reset
    return True


def test_a_connection_that_never_speaks_is_closed_after_the_handshake_timeout(project):
    server = ServerProcess(
        project, extra_args=("--handshake-timeout-seconds", str(HANDSHAKE_SECONDS))
    ).start()
    try:
        (sock,) = idle_connections(server.port, 1)
        opened_at = time.monotonic()
        with sock:
            assert closed_by_server(sock, HANDSHAKE_SECONDS + SLACK_SECONDS)
        print(f"closed after {time.monotonic() - opened_at:.1f} s")
    finally:
        server.stop()


def test_idle_connections_beyond_the_file_limit_do_not_lock_out_a_valid_client(project):
    # Soft and hard limit 256: more idle connections than descriptors.
    server = ServerProcess(
        project,
        command=with_file_limit(256, 256),
        extra_args=("--handshake-timeout-seconds", str(HANDSHAKE_SECONDS)),
    ).start()
    idle: list[socket.socket] = []
    try:
        idle = idle_connections(server.port, 300)
        with grpc.insecure_channel(server.address) as channel:
            stub = rigger_pb2_grpc.RiggerServiceStub(channel)
            reply = stub.AddTask(
                pb.AddTaskRequest(title="served"),
                timeout=HANDSHAKE_SECONDS + 3 * SLACK_SECONDS,
                wait_for_ready=True,
            )
        assert reply.task.title == "served"
    finally:
        for sock in idle:
            with contextlib.suppress(OSError):
                sock.close()
        server.stop()
