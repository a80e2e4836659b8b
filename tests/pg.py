"""The throwaway PostgreSQL cluster the PostgreSQL tests share, and a fresh database per test.

One cluster per test process, started on first use and removed at exit
(`testkit/pgcluster.py`). Each test gets its own database, a copy of one
that `rig init --db` set up once. Without PostgreSQL on the machine the tests
are skipped, except under CI (`CI` set), where that is a failure.
"""

from __future__ import annotations

import atexit
import itertools
import os
import pathlib

import pytest

from testkit.pgcluster import PgCluster, PgUnavailable
from testkit.serverproc import rig

TEMPLATE = "rigger_template"
_names = itertools.count(1)
_cluster: PgCluster | None = None


def cluster() -> PgCluster:
    """The shared cluster, started the first time it is asked for."""
    global _cluster
    if _cluster is None:
        try:
            context = PgCluster.temporary()
            started = context.__enter__()
        except PgUnavailable as exc:
            if os.environ.get("CI"):
                raise
            pytest.skip(f"no PostgreSQL: {exc}")
        atexit.register(context.__exit__, None, None, None)
        started.create_database(TEMPLATE)
        done = rig("init", "--db", started.url(TEMPLATE), cwd=pathlib.Path.cwd())
        assert done.returncode == 0, done.stderr
        _cluster = started
    return _cluster


def empty_database() -> str:
    """The URL of a new database that Rigger never touched."""
    name = f"bare_{os.getpid()}_{next(_names)}"
    return cluster().create_database(name)


def fresh_database() -> str:
    """The URL of a new database set up by `rig init --db`."""
    name = f"test_{os.getpid()}_{next(_names)}"
    return cluster().create_database(name, template=TEMPLATE)
