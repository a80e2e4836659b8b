"""Test seams: where a test-only wrapper may swap one part of the server, on purpose.

The conformance suite's self-test proves that the suite notices a broken
promise by running it against deliberately broken servers, its "mutants"
(conformance/selftest/mutants.py). Each mutant is this server with one part
swapped through a `Seams`, and through nothing else: the server is assembled
from the parts its seams name, and by default they are its own. A mutant
subclasses a part and overrides its public methods, or wraps the store.

Nothing in the product installs other seams. A wrapper that does runs `rig`
in its own process; the worker processes of `--workers` start afresh, with
the defaults. A mutant that needs to reach something not offered here asks
for a new seam in this module, never for a private name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import grpc
from grpc_health.v1 import health

from rigger_server import reflection_v1, regeneration
from rigger_server.events import Broadcaster
from rigger_server.planning import Planning, Reconcile
from rigger_server.service import RiggerServicer
from rigger_server.store import Store
from rigger_server.tasks import TaskBook


def _same_store(store: Store) -> Store:
    return store


def _same_hosts(hosts: list[str]) -> list[str]:
    return hosts


@dataclasses.dataclass(frozen=True)
class Seams:
    """The parts a server is assembled from; `Seams()` is the real server."""

    # The store the server uses, given the one `--db` opened.
    store: Callable[[Store], Store] = _same_store
    # The parts the server builds, each with the arguments the class takes.
    broadcaster: type[Broadcaster] = Broadcaster
    book: type[TaskBook] = TaskBook
    planning: type[Planning] = Planning
    # How a REPLACE or SYNC generation matches the PRD's tasks to the plan,
    # inside the generation's transaction (regeneration.reconcile).
    reconcile: Reconcile = regeneration.reconcile
    servicer: type[RiggerServicer] = RiggerServicer
    health: type[health.aio.HealthServicer] = health.aio.HealthServicer
    # Turns on server reflection (v1alpha and v1) for these services.
    reflection: Callable[[Sequence[str], grpc.aio.Server], None] = reflection_v1.enable
    # The hosts `--host localhost` binds, given the loopback hosts that work here.
    loopbacks: Callable[[list[str]], list[str]] = _same_hosts


_installed = Seams()


def install(seams: Seams) -> None:
    """Assemble every server this process starts from now on from `seams` (test-only)."""
    global _installed
    _installed = seams


def installed() -> Seams:
    """The seams servers in this process are assembled from: the real parts by default."""
    return _installed
