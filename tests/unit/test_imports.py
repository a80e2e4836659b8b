"""The house's import rules, read off the code (ARCHITECTURE.md, "Rooms").

No circles in the server, the suite or the test kit; the kit imports none of
its users; the suite imports the server only in its self-test's mutants; the
tests and benches import the suite only to test it. grimp reads every import
statement, those inside functions and under TYPE_CHECKING too.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import grimp
import pytest

PACKAGES = ("rigger_server", "conformance", "testkit", "bench", "tests")
# The suite's own tests: they import it to run it, or to test its parts.
SUITE_TESTS = ("tests.test_conformance", "tests.test_conformance_targets", "tests.unit.suite")
REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def _within(graph: grimp.ImportGraph, package: str) -> set[str]:
    return {m for m in graph.modules if m == package or m.startswith(package + ".")}


def _cycles(graph: grimp.ImportGraph, package: str) -> set[tuple[str, ...]]:
    """Every import circle among the modules of `package`, each once, smallest module first."""
    modules = _within(graph, package)
    found = set()
    for module in modules:
        for imported in graph.find_modules_directly_imported_by(module) & modules:
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                circle = (module, *back[:-1])
                first = circle.index(min(circle))
                found.add(circle[first:] + circle[:first])
    return found


def _importers(graph: grimp.ImportGraph, of: str, among: str) -> set[str]:
    """The modules of `among` that import `of` (or a module in it) directly."""
    imported = _within(graph, of)
    return {
        m for m in _within(graph, among) if graph.find_modules_directly_imported_by(m) & imported
    }


@pytest.mark.parametrize("package", ["rigger_server", "conformance", "testkit"])
def test_no_import_circles(graph, package):
    assert _cycles(graph, package) == set()


# Where each package's source lives. A folder without __init__.py is a
# namespace package, which grimp does not read: its imports would escape every
# rule here (conformance/runner, suite and targets did, until this test).
SOURCES = {
    "rigger_server": REPO / "server" / "rigger_server",
    "conformance": REPO / "conformance",
    "testkit": REPO / "testkit",
    "bench": REPO / "bench",
}


@pytest.mark.parametrize("package", sorted(SOURCES))
def test_the_rules_read_every_module_of_the_package(graph, package):
    root = SOURCES[package]
    expected = {
        ".".join((package, *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
        for path in root.rglob("*.py")
        if "gen" not in path.relative_to(root).parts and "node_modules" not in path.parts
    }
    assert expected - _within(graph, package) == set()


def test_the_circle_check_finds_a_circle():
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.c")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert _cycles(graph, "pkg") == {("pkg.a", "pkg.b", "pkg.c")}


@pytest.mark.parametrize("user", ["tests", "bench", "conformance", "rigger_server"])
def test_the_test_kit_imports_none_of_its_users(graph, user):
    assert _importers(graph, of=user, among="testkit") == set()


def test_the_suite_imports_the_server_only_in_its_mutants(graph):
    assert _importers(graph, of="rigger_server", among="conformance") == {
        "conformance.selftest.mutants"
    }


def test_the_suite_runs_without_the_server_until_the_self_test():
    # What `rigger-conformance`, installed without the server, must be able to do.
    probe = (
        "import sys, conformance.cli, conformance.skew.__main__, conformance.selftest.search; "
        "print(sorted(m for m in sys.modules if m.startswith('rigger_server')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


# The microbenches measure these in process (ARCHITECTURE.md, "Rooms").
BENCHES_OF_SERVER_PARTS = {
    "bench.conftest",
    "bench.samples",
    "bench.test_encode",
    "bench.test_fanout",
    "bench.test_write_path",
    "bench.ceiling_server",
}


def test_the_benches_import_the_server_only_where_they_measure_its_parts(graph):
    assert _importers(graph, of="rigger_server", among="bench") <= BENCHES_OF_SERVER_PARTS


def test_the_benches_do_not_import_the_suite(graph):
    assert _importers(graph, of="conformance", among="bench") == set()


def test_only_the_suites_own_tests_import_the_suite(graph):
    importers = _importers(graph, of="conformance", among="tests")
    assert {m for m in importers if not m.startswith(SUITE_TESTS)} == set()
