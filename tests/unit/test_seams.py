"""The test seams (seams.py): by default the server is made of its own parts, and only the
self-test's mutants install others."""

from __future__ import annotations

import grimp
from grpc_health.v1 import health
from rigger_server import reflection_v1, regeneration, seams
from rigger_server.events import Broadcaster
from rigger_server.planning import Planning
from rigger_server.service import RiggerServicer
from rigger_server.tasks import TaskBook


def test_the_default_seams_are_the_servers_own_parts():
    default = seams.Seams()
    assert default.broadcaster is Broadcaster
    assert default.book is TaskBook
    assert default.planning is Planning
    assert default.reconcile is regeneration.reconcile
    assert default.servicer is RiggerServicer
    assert default.health is health.aio.HealthServicer
    # v1alpha and v1, from one servicer.
    assert default.reflection is reflection_v1.enable
    store = object()
    assert default.store(store) is store
    assert default.loopbacks(["[::1]", "127.0.0.1"]) == ["[::1]", "127.0.0.1"]


def test_a_process_starts_with_the_default_seams():
    assert seams.installed() == seams.Seams()


def test_only_the_assembly_and_the_mutants_import_the_seams():
    graph = grimp.build_graph("rigger_server", "conformance", cache_dir=None)
    importers = graph.find_modules_that_directly_import("rigger_server.seams")
    assert importers == {"rigger_server.app", "conformance.selftest.mutants"}
