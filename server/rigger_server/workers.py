"""`rig grpc --workers N`: N server processes on one port, each publishing the whole event log.

One Python process sends every message of every subscriber stream from one
event loop, on one core. With N workers the kernel spreads incoming
connections over N listening sockets bound to the same port (SO_REUSEPORT),
so streams and their sends split across N loops. All workers write to the one
SQLite database; each publishes every event to its own subscribers — its own
commits at once, the others' through the log tail (`tail.py`), told of them
by a datagram (`peers.py`), as any servers sharing a database are.

The supervisor (this module, in the `rig grpc` process) checks the port is
free, holds it while the workers start, forwards signals, and stops everything
if a worker dies: a half-running server is worse than a stopped one.

With `--metrics-port` the supervisor serves the metrics of every worker,
summed: it makes a private directory, the workers write their values there
(prometheus_client's multiprocess mode, PROMETHEUS_MULTIPROC_DIR), and the
supervisor's one endpoint reads them all. It removes the directory when it
stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import pathlib
import shutil
import signal
import socket
import tempfile
import time
import types
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from rigger_server import database, logs, metrics, wire
from rigger_server.app import (
    NOTHING_TO_RELOAD,
    PORT_ATTEMPTS,
    PortInUse,
    RiggerServer,
    ServerConfig,
    loopbacks,
)
from rigger_server.auth import TokenAuth
from rigger_server.metrics_http import MetricsServer

log = logging.getLogger(__name__)

_START_SECONDS = 60.0


_Address = tuple[str, socket.AddressFamily, tuple[Any, ...]]


def _sockaddrs(host: str) -> list[_Address]:
    # Each with the name the one-process server would print for it.
    hosts = loopbacks() if host == "localhost" else [host]
    found: list[_Address] = []
    for name in hosts:
        family, _, _, _, sockaddr = socket.getaddrinfo(
            name.strip("[]"), 0, type=socket.SOCK_STREAM
        )[0]
        found.append((name, family, sockaddr))
    return found


class _BindFailed(Exception):
    def __init__(self, address: str, port: int) -> None:
        super().__init__(address)
        self.address = address
        self.port = port


def _bind_all(host: str, port: int, reuse_port: bool) -> tuple[int, list[socket.socket]]:
    bound: list[socket.socket] = []
    for name, family, sockaddr in _sockaddrs(host):
        sock = socket.socket(family, socket.SOCK_STREAM)
        bound.append(sock)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((sockaddr[0], port, *sockaddr[2:]))
        except OSError as exc:
            for opened in bound:
                opened.close()
            raise _BindFailed(f"{name}:{port}", port) from exc
        port = sock.getsockname()[1]
    return port, bound


def reserve_port(host: str, port: int) -> tuple[int, list[socket.socket]]:
    """Check that `port` (0: a free one) is free on every address of `host`, and hold it.

    The check binds without SO_REUSEPORT, so anything already there, even
    another server sharing its port, makes it fail. The held sockets allow
    SO_REUSEPORT and never listen: the workers can join them, nobody else can
    take the port, and no connection is ever queued on them.
    """
    failed = PortInUse(f"{host}:{port}", port)
    for _ in range(PORT_ATTEMPTS):
        try:
            chosen, probes = _bind_all(host, port, reuse_port=False)
            for sock in probes:
                sock.close()
            return _bind_all(host, chosen, reuse_port=True)
        except _BindFailed as exc:
            if port != 0:
                raise PortInUse(exc.address, exc.port) from exc
            # The free port on one loopback was taken on the other: pick again.
            failed = PortInUse(exc.address, exc.port)
    raise failed


def _worker(index: int, config: ServerConfig, conn: Connection, lifeline: Connection) -> None:
    # Ctrl-C reaches the whole process group; the supervisor turns it into a
    # SIGTERM for each worker, so a worker still starting up is not torn down
    # with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logs.configure(config.log_format, worker=index)

    async def serve() -> None:
        try:
            server = RiggerServer(config)  # reads the token file and the TLS files
            server.handle_signals(interrupt=False)
            # Born with SIGHUP blocked (see Supervisor.start); one that came
            # meanwhile is handled now.
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
            await server.start()
        except Exception as exc:
            conn.send(("error", exc))
            return
        conn.send(("ready", server.addresses))
        # The supervisor holds the other end of `lifeline` and never writes:
        # end-of-file means it died (even by SIGKILL), and a worker must not
        # outlive it, holding the port with no one to stop it.
        loop = asyncio.get_running_loop()

        def supervisor_gone() -> None:
            loop.remove_reader(lifeline.fileno())
            log.error("the supervisor is gone; stopping")
            server.request_stop()

        loop.add_reader(lifeline.fileno(), supervisor_gone)
        await server.wait()

    asyncio.run(serve())


class Supervisor:
    """Starts N worker processes on one port and keeps them running together."""

    def __init__(self, config: ServerConfig, count: int) -> None:
        if count < 2:
            raise ValueError("a supervisor runs at least two workers")
        self.config = config
        self.count = count
        self.addresses: list[str] = []
        self.port = 0
        self._processes: list[BaseProcess] = []
        self._lifelines: list[Connection] = []
        self._stopping = False
        self.metrics_server: MetricsServer | None = None
        self._metrics_dir: pathlib.Path | None = None
        self._auth: TokenAuth | None = None

    @property
    def metrics_port(self) -> int | None:
        """The port serving every worker's metrics, or None without --metrics-port."""
        return self.metrics_server.port if self.metrics_server else None

    def _serve_metrics(self) -> None:
        """Serve the sum of the workers' metrics from a private directory they write to."""
        config = self.config
        if config.metrics_port is None:
            return
        self._metrics_dir = pathlib.Path(tempfile.mkdtemp(prefix="rigger-metrics-"))
        # Read by prometheus_client in each worker as it starts (spawned, so
        # it imports everything afresh): their values go to files there.
        os.environ[metrics.MULTIPROC_ENV] = str(self._metrics_dir)
        self._auth = TokenAuth(config.auth_token_file) if config.auth_token_file else None
        self.metrics_server = MetricsServer(
            config.metrics_host,
            config.metrics_port,
            metrics.registry(self._metrics_dir),
            self._auth,
        )

    def _stop_metrics(self) -> None:
        if self.metrics_server is not None:
            self.metrics_server.close()
            self.metrics_server = None
        if self._metrics_dir is not None:
            os.environ.pop(metrics.MULTIPROC_ENV, None)
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
            self._metrics_dir = None

    def start(self) -> bool:
        """Check and hold the port, start every worker and wait until all serve.

        Returns False when SIGINT or SIGTERM arrived meanwhile: the workers are
        then stopping, and `wait()` returns once they have. Raises what a
        worker raised while starting (PortInUse, TokenFileError, ...).
        """
        config = self.config
        # From the first worker on, a stop request must reach every worker.
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hangup)
        # Create the SQLite schema (or check the PostgreSQL one) once here
        # rather than in N racing workers.
        store, _ = database.open_log(config.db_path, wire.encode_event)
        store.close()
        port, held = reserve_port(config.host, config.port)
        try:
            self._serve_metrics()
        except BaseException:
            self._stop_metrics()
            for sock in held:
                sock.close()
            raise
        context = multiprocessing.get_context("spawn")
        worker_config = dataclasses.replace(config, port=port, reuse_port=True)
        try:
            pipes = []
            for index in range(self.count):
                if self._stopping:
                    break
                receive, send = context.Pipe(duplex=False)
                lifeline, held_end = context.Pipe(duplex=False)
                process = context.Process(
                    target=_worker,
                    args=(index, worker_config, send, lifeline),
                    name=f"rigger-worker-{index}",
                )
                # Born with SIGINT blocked, so a Ctrl-C while it starts up
                # cannot tear it down with a traceback: Ctrl-C is the
                # supervisor's, which gets it once unblocked here. SIGHUP
                # too: a rotation forwarded before the worker installs its
                # handler would kill it; it unblocks SIGHUP once it has one.
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGHUP})
                try:
                    process.start()
                finally:
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGHUP})
                send.close()
                lifeline.close()
                self._lifelines.append(held_end)
                self._processes.append(process)
                pipes.append(receive)
            for index, receive in enumerate(pipes):
                self.addresses = self._await_ready(index, receive)
        except BaseException:
            stopping = self._stopping
            self.stop()
            if stopping:
                return False  # a worker ended because it was told to
            raise
        finally:
            for sock in held:
                sock.close()
        self.port = port
        return not self._stopping

    def _await_ready(self, index: int, receive: Connection) -> list[str]:
        deadline = time.monotonic() + _START_SECONDS
        # Short polls, so a stop request is noticed while workers start.
        while not receive.poll(0.1):
            if self._stopping:
                raise RuntimeError("stopped while starting")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker {index} did not start within {_START_SECONDS:.0f} s")
        try:
            kind, value = receive.recv()
        except EOFError:
            self._processes[index].join(5.0)
            code = self._processes[index].exitcode
            raise RuntimeError(f"worker {index} exited while starting (code {code})") from None
        if kind == "error":
            raise value
        addresses: list[str] = value
        return addresses

    def wait(self) -> int:
        """Serve until SIGINT or SIGTERM (0) or until a worker dies (1); SIGHUP is passed on."""
        by_sentinel = {p.sentinel: p for p in self._processes}
        if self._stopping and not any(p.is_alive() for p in self._processes):
            return 0  # stopped while starting
        ended = multiprocessing.connection.wait(list(by_sentinel))
        if self._stopping:
            self._join()
            return 0
        for sentinel in ended:
            process = by_sentinel[sentinel]  # type: ignore[index]  # sentinels are ints
            process.join(5.0)  # the sentinel fires a moment before the exit code is known
            log.error(
                "%s exited unexpectedly (code %s); stopping the other workers",
                process.name,
                process.exitcode,
            )
        self.stop()
        return 1

    def _on_stop(self, signum: int, frame: types.FrameType | None) -> None:
        self._stopping = True
        self._signal_all(signal.SIGTERM)

    def _on_hangup(self, signum: int, frame: types.FrameType | None) -> None:
        if self.config.auth_token_file is None and self.config.tls is None:
            log.info("SIGHUP ignored: %s", NOTHING_TO_RELOAD)
            return
        if self._auth is not None:
            self._auth.reload()  # the metrics endpoint's tokens
        # Every worker re-reads the files: it ends its own streams whose
        # token is revoked, and its new connections get the new certificate.
        self._signal_all(signal.SIGHUP)

    def _signal_all(self, signum: int) -> None:
        for process in self._processes:
            if process.pid is not None and process.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)

    def stop(self) -> None:
        """Stop every worker gracefully (SIGTERM), killing any that outlive the grace period."""
        self._stopping = True
        self._signal_all(signal.SIGTERM)
        self._join()

    def _join(self) -> None:
        limit = self.config.grace_seconds + 10.0
        for process in self._processes:
            process.join(limit)
            if process.exitcode is None:
                log.error("%s did not stop in time; killing it", process.name)
                process.kill()
                process.join()
        self._stop_metrics()
