"""The servers under test: Rigger (`rig grpc`), the two ceilings, or a running `--target`."""

from __future__ import annotations

import dataclasses
import ipaddress
import pathlib
import socket
import sys

from bench import matrix
from testkit.serverproc import ServerProcess

AIO_CEILING_SCRIPT = pathlib.Path(__file__).with_name("ceiling_server.py")
LABELS = {
    matrix.RIGGER: "Rigger",
    matrix.AIO: "grpc.aio ceiling",
    matrix.TONIC: "tonic ceiling",
    matrix.TARGET: "target",
}


@dataclasses.dataclass(slots=True)
class Target:
    """A server someone else started: no process of ours, nothing to stop."""

    address: str
    proc: None = None

    def stop(self) -> None:
        """Leave it running: it is not ours."""


Server = ServerProcess | Target


def start(
    kind: str,
    root: pathlib.Path,
    buffer: int,
    workers: int = 1,
    tonic_binary: pathlib.Path | None = None,
    target: str | None = None,
) -> Server:
    """Start a fresh server of `kind` in `root` (a new database for Rigger) and wait for health.

    Every server we start takes `rig grpc`'s arguments and prints its banner,
    so ServerProcess starts and health-checks each the same way.
    """
    if kind == matrix.TARGET:
        assert target is not None
        return Target(target)
    root.mkdir(parents=True, exist_ok=True)
    extra = ("--buffer", str(buffer))
    if kind == matrix.RIGGER:
        return ServerProcess(root, extra_args=(*extra, "--workers", str(workers))).start()
    if kind == matrix.AIO:
        command: tuple[str, ...] = (sys.executable, str(AIO_CEILING_SCRIPT))
    elif kind == matrix.TONIC:
        if tonic_binary is None:
            raise RuntimeError("the tonic ceiling is not built")
        command = (str(tonic_binary),)
    else:
        raise ValueError(f"unknown server kind {kind!r}; expected one of {list(LABELS)}")
    return ServerProcess(root, extra_args=extra, command=command).start()


def is_loopback(address: str) -> bool:
    """Whether HOST:PORT names this machine (localhost, 127.0.0.0/8, ::1)."""
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(
                ipaddress.ip_address(info[4][0]).is_loopback
                for info in socket.getaddrinfo(host, None)
            )
        except OSError:
            return False
