"""A server under test as a child process: `rig grpc` (or a stand-in) on a free port.

The conformance runner, the tests and the benches start servers through this.
The server tells where it listens through `--ready-file` (JSON), written once
it serves; nothing here reads its human-readable banner. `rig()` runs one
`rig` command to completion.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from testkit.wait import wait_until

# The `rig` command of this interpreter, whether or not its script is on PATH.
RIG: tuple[str, ...] = (sys.executable, "-m", "rigger_server.cli")


class ServerProcess:
    """One `rig grpc` process. `start()` waits until health says SERVING."""

    def __init__(
        self,
        root: pathlib.Path,
        *,
        db: pathlib.Path | str | None = None,
        extra_args: tuple[str, ...] = (),
        command: tuple[str, ...] = RIG,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
    ) -> None:
        self.root = root
        # A SQLite file, or a postgresql:// URL (str).
        self.db = db or root / ".rigger" / "tasks.db"
        self.extra_args = extra_args
        # What to run instead of `rig`, e.g. a wrapper that changes behaviour.
        self.command = command
        # How the readiness check reaches a server with TLS or tokens.
        self.credentials = credentials
        self.token = token
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None
        self.log_path = root / "server.log"
        self.out_path = root / "server.out"
        self.ready_path = root / "server.ready.json"

    @property
    def address(self) -> str:
        """`127.0.0.1:<port>`: what a client dials."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ServerProcess:
        """Start on the previous port (or a free one the first time) and wait until serving."""
        if isinstance(self.db, pathlib.Path):
            self.db.parent.mkdir(parents=True, exist_ok=True)
        self.ready_path.unlink(missing_ok=True)
        args = [
            *self.command,
            "grpc",
            "--port",
            str(self.port),
            "--db",
            str(self.db),
            "--ready-file",
            str(self.ready_path),
            *self.extra_args,
        ]
        with self.out_path.open("a") as out, self.log_path.open("a") as log:
            self.proc = subprocess.Popen(
                args,
                cwd=self.root,
                stdout=out,
                stderr=log,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        try:
            wait_until(self._ready, "the server's ready file", within=timeout)
        except TimeoutError:
            raise RuntimeError(f"server not ready within {timeout} s: {self.read_log()}") from None
        self.port = int(json.loads(self.ready_path.read_text())["port"])
        self._wait_serving(deadline)
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited early: {self.banner}{self.read_log()}")
        return self.ready_path.exists()

    @property
    def banner(self) -> str:
        """What the server printed to stdout so far (its banner, then its goodbye)."""
        return self.out_path.read_text() if self.out_path.exists() else ""

    def channel(self) -> grpc.Channel:
        """A blocking channel to the server, with its credentials if it needs them."""
        if self.credentials is None:
            return grpc.insecure_channel(self.address)
        return grpc.secure_channel(f"localhost:{self.port}", self.credentials)

    def _wait_serving(self, deadline: float) -> None:
        metadata = (("authorization", f"Bearer {self.token}"),) if self.token else None
        with self.channel() as channel:
            # types-grpcio-health-checking declares HealthStub without its methods.
            stub: Any = health_pb2_grpc.HealthStub(channel)

            def serving() -> bool:
                try:
                    reply = stub.Check(
                        health_pb2.HealthCheckRequest(), timeout=1, metadata=metadata
                    )
                except grpc.RpcError:
                    if time.monotonic() > deadline:
                        raise
                    return False
                return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

            wait_until(serving, "health to say SERVING", within=max(deadline - time.monotonic(), 0))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send `sig` and wait for the process to exit; returns its exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to clean up."""
        self.stop(signal.SIGKILL)

    def replica_for(self, role_index: int) -> ServerProcess:
        """The server the clients of a case's `role_index`-th role dial: this one.

        `testkit.replicas.Replicas` stands in for a ServerProcess and answers
        with one of its replicas instead.
        """
        return self

    def restart(self) -> ServerProcess:
        """Graceful stop, then start again on the same port with the same database."""
        self.stop()
        return self.start()

    def read_log(self) -> str:
        """What the server wrote to stderr so far."""
        return self.log_path.read_text() if self.log_path.exists() else ""


def rig(*args: str, cwd: pathlib.Path, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run `rig ARGS` to completion in `cwd`."""
    return subprocess.run(
        [*RIG, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
