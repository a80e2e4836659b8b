"""Two `rig grpc` replicas on PostgreSQL standing in for one server (`conformance --postgres`).

`on_a_cluster()` starts one throwaway cluster (`pgcluster.py`) and sets up a
template database with `rig init --db` once; each `Replicas` gets its own
copy of it and two replicas on that copy, both in one project directory.

Client roles alternate between the replicas in the order the case lists them:
the first role dials replica 0, the second replica 1, the third replica 0
again, and so on (a fanout role's instances all dial their role's replica).
So in every case with a writer and a watcher, writes go through one replica
and subscriptions through the other, and the contract must hold across them.
`server:` steps stop, start or restart the replica of the case's last role
(in the suite's cases, the subscribers'), so streams end there and clients
resume on a replica that was restarted while the other kept serving.
`${address}` is replica 0's.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pathlib
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from testkit.pgcluster import PgCluster
from testkit.serverproc import RIG, ServerProcess

REPLICAS = 2
TEMPLATE = "rigger_conformance"
_names = itertools.count(1)


class Replicas:
    """A run's replicas on a fresh database; stands in for a run's ServerProcess."""

    def __init__(
        self,
        cluster: PgCluster,
        root: pathlib.Path,
        *,
        db: pathlib.Path | str | None = None,
        **server: Any,
    ) -> None:
        # `db` names the one-server run's SQLite file; replicas get a database.
        self.cluster = cluster
        self.database = f"run_{os.getpid()}_{next(_names)}"
        self.url = cluster.url(self.database)
        self.replicas = [ServerProcess(root, db=self.url, **server) for _ in range(REPLICAS)]
        self.log_path = root / "server.log"
        self._created = False

    @property
    def log_path(self) -> pathlib.Path:
        """Where replica 0 logs; replica i logs beside it, in `server-<i>.log`."""
        return self._log_path

    @log_path.setter
    def log_path(self, path: pathlib.Path) -> None:
        self._log_path = path
        for index, replica in enumerate(self.replicas):
            # One project directory, so each replica's own files get its number.
            replica.log_path = path.with_name(f"{path.stem}-{index}{path.suffix}")
            replica.out_path = path.with_name(f"{path.stem}-{index}.out")
            replica.ready_path = path.with_name(f"{path.stem}-{index}.ready.json")

    @property
    def address(self) -> str:
        """Replica 0's address."""
        return self.replicas[0].address

    @property
    def port(self) -> int:
        """Replica 0's port."""
        return self.replicas[0].port

    def replica_for(self, role_index: int) -> ServerProcess:
        """The replica the clients of the case's `role_index`-th role dial."""
        return self.replicas[role_index % REPLICAS]

    def start(self) -> Replicas:
        """Create the run's database, then start every replica (together) until serving."""
        if not self._created:
            self.cluster.create_database(self.database, template=TEMPLATE)
            self._created = True
        with ThreadPoolExecutor(REPLICAS) as pool:
            for started in [pool.submit(r.start) for r in self.replicas]:
                started.result()
        return self

    def stop(self) -> int:
        """Stop every replica and drop the run's database; the first non-zero exit code."""
        with ThreadPoolExecutor(REPLICAS) as pool:
            codes = list(pool.map(lambda replica: replica.stop(), self.replicas))
        if self._created:
            with contextlib.suppress(RuntimeError):
                self.cluster.drop_database(self.database)
            self._created = False
        return next((code for code in codes if code), 0)

    def read_log(self) -> str:
        """Every replica's log, each under a heading."""
        return "".join(
            f"--- replica {index} ---\n{replica.read_log()}"
            for index, replica in enumerate(self.replicas)
        )


@contextlib.contextmanager
def on_a_cluster() -> Iterator[tuple[Callable[..., Replicas], PgCluster]]:
    """A throwaway cluster with a template database, and a maker of `Replicas` on copies of it.

    The maker takes what ServerProcess takes (root, then keywords).
    """
    with PgCluster.temporary() as cluster:
        cluster.create_database(TEMPLATE)
        done = subprocess.run(
            [*RIG, "init", "--db", cluster.url(TEMPLATE)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"rig init --db failed: {done.stderr}")

        def make(root: pathlib.Path, **server: Any) -> Replicas:
            return Replicas(cluster, root, **server)

        yield make, cluster
