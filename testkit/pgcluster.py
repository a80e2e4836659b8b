"""A throwaway PostgreSQL cluster: `initdb` and `pg_ctl` on a temporary directory.

For the tests, the conformance runner (`--postgres`) and the benches: no
containers, nothing left behind. The cluster listens on 127.0.0.1 at a free
port and on a Unix socket in its own directory, trusts local connections, and
is removed when stopped.

`initdb` refuses to run as root, and CI runs as root: then every PostgreSQL
command runs as the unprivileged `postgres` user (`runuser -u postgres`), and
the cluster's directory, made fresh in the system's temporary directory so
that user can reach it, belongs to that user.

    with PgCluster.temporary() as cluster:
        url = cluster.create_database("run1")   # postgresql://postgres@127.0.0.1:PORT/run1
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator

SUPERUSER = "postgres"
# Debian installs the binaries here, off PATH.
DEBIAN_BINARIES = pathlib.Path("/usr/lib/postgresql")


class PgUnavailable(RuntimeError):
    """No PostgreSQL binaries, or no unprivileged user to run them as root."""


def binaries() -> pathlib.Path:
    """The directory holding initdb and pg_ctl: on PATH, else Debian's newest."""
    found = shutil.which("initdb")
    if found:
        return pathlib.Path(found).resolve().parent
    versions = sorted(
        (p for p in DEBIAN_BINARIES.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not versions:
        raise PgUnavailable(
            "PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin); "
            "on Debian: apt-get install postgresql"
        )
    return versions[-1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PgCluster:
    """One PostgreSQL cluster in a directory of its own."""

    def __init__(self, directory: pathlib.Path, *, durable: bool = False) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.log_path = directory / "postgres.log"
        self.port = _free_port()
        # Tests and the suite never survive a machine crash, so they skip
        # fsync; a bench measuring writes passes durable=True.
        self.durable = durable
        self._bin = binaries()
        self._user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(SUPERUSER)
            except KeyError:
                raise PgUnavailable(
                    f"running as root, and initdb refuses root: there is no {SUPERUSER!r} "
                    "user to run PostgreSQL as (apt-get install postgresql creates it)"
                ) from None
            self._user = SUPERUSER
        self._runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
        if self._user is not None and self._runuser is None:
            raise PgUnavailable("running as root, and runuser (util-linux) is not installed")

    @classmethod
    @contextlib.contextmanager
    def temporary(cls, *, durable: bool = False) -> Iterator[PgCluster]:
        """A started cluster in a fresh temporary directory; stopped and removed afterwards."""
        directory = pathlib.Path(tempfile.mkdtemp(prefix="rigger-pg-"))
        cluster = cls(directory, durable=durable)
        try:
            cluster.init()
            cluster.start()
            yield cluster
        finally:
            cluster.destroy()

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self._bin / args[0]), *args[1:]]
        if self._user is not None:
            command = [str(self._runuser), "-u", self._user, "--", *command]
        done = subprocess.run(
            command, cwd=self.directory, capture_output=True, text=True, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{args[0]} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
                f"{self.read_log()}"
            )
        return done

    def init(self) -> None:
        """initdb: a new cluster, trusting local connections."""
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb",
            "--pgdata",
            str(self.data),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.directory}'",
            "max_connections": "300",
            "fsync": "on" if self.durable else "off",
            "full_page_writes": "on" if self.durable else "off",
            "log_min_messages": "warning",
        }
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("".join(f"{key} = {value}\n" for key, value in settings.items()))

    def start(self) -> None:
        """pg_ctl start, waiting until it accepts connections."""
        self._run("pg_ctl", "--pgdata", str(self.data), "--log", str(self.log_path), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop: `fast` disconnects every client; `immediate` is a crash."""
        self._run("pg_ctl", "--pgdata", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Stop (disconnecting everyone) and start again on the same port."""
        self.stop()
        self.start()

    def destroy(self) -> None:
        """Stop if running, and remove the directory."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "--pgdata", str(self.data), "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        """A URL for `database` on this cluster, as its superuser."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one SQL statement with psql; return what it printed (unaligned, no headers)."""
        done = self._run(
            "psql",
            "--no-psqlrc",
            "--quiet",
            "--tuples-only",
            "--no-align",
            "--set",
            "ON_ERROR_STOP=1",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--username",
            SUPERUSER,
            "--dbname",
            database,
            "--command",
            statement,
        )
        return done.stdout.strip()

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create a database (a copy of `template`, if given); return its URL."""
        copy = f" TEMPLATE {template}" if template else ""
        self.sql(f"CREATE DATABASE {name}{copy}")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever is still on it."""
        self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def read_log(self) -> str:
        """What the cluster logged so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
