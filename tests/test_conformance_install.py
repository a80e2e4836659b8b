"""rigger-conformance installed as someone testing their own server would: outside the repo.

The walk-through in docs/testing-your-own-server.md is run as written: every
```bash block marked `<!-- run by tests/test_conformance_install.py -->`
(tests/docblocks.py) runs with bash in a scratch directory holding `rigger/`
(this checkout) and nothing else, against a `rig grpc` this test starts, with
the page's example address (127.0.0.1:50051) and project root
(/srv/my-server) replaced by that server's.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import tomllib
import zipfile

import docblocks
import grpc
import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc as rpc
from rigger_server import __version__

from testkit.serverproc import ServerProcess

REPO = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE_ADDRESS = "127.0.0.1:50051"
EXAMPLE_ROOT = "/srv/my-server"
INSTALL_TIMEOUT_S = 600
# Creating venvs and installing into them, from the package index when pip's
# cache lacks a wheel, takes minutes on a busy machine.
pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT_S)


def marked_blocks() -> list[str]:
    """The ```bash blocks of the walk-through marked as run by this file, in order."""
    return docblocks.run_by("docs/testing-your-own-server.md", __file__)


def blocks_mentioning(word: str) -> list[str]:
    return [b for b in marked_blocks() if word in b]


def conformance_pins() -> tuple[list[str], list[str]]:
    root = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    suite = tomllib.loads((REPO / "conformance" / "pyproject.toml").read_text(encoding="utf-8"))
    return root["dependency-groups"]["conformance"], suite["project"]["dependencies"]


def test_the_distribution_is_at_the_servers_version():
    suite = tomllib.loads((REPO / "conformance" / "pyproject.toml").read_text(encoding="utf-8"))
    assert suite["project"]["version"] == __version__


def test_the_distribution_pins_what_the_repository_pins():
    group, dependencies = conformance_pins()
    assert set(group) <= set(dependencies)
    root = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    grpc_pins = {d for d in root["project"]["dependencies"] if d.startswith(("grpcio", "protobuf"))}
    assert grpc_pins <= set(dependencies)


def test_the_walk_through_marks_the_blocks_this_file_runs():
    assert len(marked_blocks()) == 4
    assert marked_blocks()[0].startswith("python3 -m venv conformance-venv")


@pytest.mark.slow
def test_the_wheel_carries_every_file_git_tracks_under_conformance(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path, "./conformance"],
        cwd=REPO,
        check=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    [wheel] = tmp_path.glob("rigger_conformance-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(
        ["git", "ls-files", "conformance", "testkit"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    left_out = {"conformance/pyproject.toml"}
    assert {t for t in tracked if t not in shipped} <= left_out
    assert not [n for n in shipped if "node_modules" in n or "/dist/" in n]


# --- the walk-through, run as written ------------------------------------------------


@pytest.fixture(scope="module")
def running_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("my-server")
    server = ServerProcess(root).start()
    yield server, root
    server.stop()


@pytest.fixture(scope="module")
def outsider(tmp_path_factory):
    """A directory outside the repository holding only `rigger/`, the clone."""
    where = tmp_path_factory.mktemp("outsider")
    (where / "rigger").symlink_to(REPO)
    return where


def run_block(block: str, where: pathlib.Path, server: ServerProcess, root: pathlib.Path) -> str:
    script = block.replace(EXAMPLE_ADDRESS, server.address).replace(EXAMPLE_ROOT, str(root))
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"{script}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def live_tasks(server: ServerProcess) -> int:
    with grpc.insecure_channel(server.address) as channel:
        return rpc.RiggerServiceStub(channel).ListTasks(pb.ListTasksRequest(limit=1)).total_count


@pytest.fixture(scope="module")
def installed(outsider, running_server):
    [install] = blocks_mentioning("pip install rigger/conformance")
    run_block(install, outsider, *running_server)
    return outsider / "conformance-venv" / "bin" / "rigger-conformance"


@pytest.mark.slow
def test_the_installed_suite_has_no_server_of_its_own(installed):
    python = installed.parent / "python"
    probe = "import importlib.util; print(importlib.util.find_spec('rigger_server'))"
    found = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "None"


@pytest.mark.slow
def test_the_installed_suite_runs_against_a_running_server_and_archives_what_it_made(
    installed, outsider, running_server
):
    server, root = running_server
    before = live_tasks(server)
    [first] = blocks_mentioning("-k add_task")
    said = run_block(first, outsider, server, root)
    assert re.search(r"\n(\d+) passed, 0 failed", said), said
    assert "archived the" in said
    assert live_tasks(server) == before
    assert (outsider / "build" / "conformance" / "target" / "partial" / "report.json").exists()


@pytest.mark.slow
def test_the_installed_suite_places_prd_files_under_the_target_root_and_removes_them(
    installed, outsider, running_server
):
    server, root = running_server
    [files] = blocks_mentioning("--target-root")
    said = run_block(files, outsider, server, root)
    assert re.search(r"\n(\d+) passed, 0 failed", said), said
    assert not (root / "rigger-conformance").exists()


@pytest.mark.slow
def test_the_installed_suite_without_a_target_says_what_to_point_it_at(installed, tmp_path):
    done = subprocess.run(
        [installed, "-k", "add_task"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "--target HOST:PORT" in done.stderr and "--target-cmd" in done.stderr


@pytest.mark.slow
def test_the_installed_self_test_names_the_server_it_needs(installed, tmp_path):
    done = subprocess.run(
        [installed, "--self-test"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert "needs that server installed" in done.stderr


@pytest.mark.slow
def test_the_bench_runs_against_a_target_from_its_extra_into_its_own_folder(
    outsider, running_server
):
    full_run = REPO / "build" / "bench" / "report.json"
    before = full_run.stat().st_mtime_ns if full_run.exists() else None
    [bench] = blocks_mentioning("python -m bench")
    said = run_block(bench, outsider, *running_server)
    assert "build/bench/target/report.json" in said
    assert (REPO / "build" / "bench" / "target" / "report.md").exists()
    assert (full_run.stat().st_mtime_ns if full_run.exists() else None) == before
