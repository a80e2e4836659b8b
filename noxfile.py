"""Rigger's developer tasks. `nox` runs the default set: what CI runs."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "breaking", "generated", "tests", "clients", "conformance"]

ROOT = pathlib.Path(__file__).parent
PYPROJECT = nox.project.load_toml("pyproject.toml")
RELEASED_IMAGE = "proto/released/rigger-v1.0.0.binpb"
GEN_DIRS = [
    "clients/python/gen",
    "clients/go/gen",
    "clients/ts/gen",
    # The conformance harness protocol, generated beside the code that uses it.
    "conformance/gen/python",
    "conformance/executors/go/gen",
    "conformance/executors/ts/gen",
]
HARNESS_TEMPLATE = "conformance/buf.gen.yaml"

# Generator versions: change them only together with a regeneration.
GO_PLUGINS = {
    "protoc-gen-go": "google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.11",
    "protoc-gen-go-grpc": "google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0",
}
GRPCURL = "github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3"
BIN = ROOT / ".bin"


def _group(name: str) -> list[str]:
    return nox.project.dependency_groups(PYPROJECT, name)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff, mypy --strict, buf lint and buf format on the project's own code and contract."""
    # The project itself too: mypy follows its imports (grpc, markdown-it, rigger.v1, mcp).
    session.install("-e", ".[postgres,mcp]", *_group("lint"))
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")  # what and how: [tool.mypy] in pyproject.toml
    session.run("buf", "lint")
    session.run("buf", "format", "--diff", "--exit-code")


def _install_buf(session: nox.Session) -> None:
    # Only buf, at the lint group's pin: mypy and its stubs are not needed here.
    session.install(*(r for r in _group("lint") if r.startswith("buf-bin")))


@nox.session
def breaking(session: nox.Session) -> None:
    """Fail on any wire-breaking change against the released contract image."""
    _install_buf(session)
    # Only the product module: the harness protocol (conformance/proto) is no contract.
    session.run("buf", "breaking", "proto", "--against", RELEASED_IMAGE, *session.posargs)


@nox.session(default=False)
def release_contract(session: nox.Session) -> None:
    """Record the current contract as released (run only when cutting a release)."""
    _install_buf(session)
    session.run("buf", "build", "proto", "--exclude-source-info", "-o", RELEASED_IMAGE)
    session.log(f"wrote {RELEASED_IMAGE}; commit it with the release")


def _go_install(session: nox.Session, name: str, module: str) -> None:
    session.run("go", "install", module, env={"GOBIN": str(BIN)}, external=True)
    if not (BIN / name).exists():
        session.error(f"go install did not produce .bin/{name}")


def _install_generators(session: nox.Session) -> None:
    session.install(*_group("codegen"))
    for name, module in GO_PLUGINS.items():
        _go_install(session, name, module)
    ts = ROOT / "clients" / "ts"
    if not (ts / "node_modules" / ".bin" / "protoc-gen-es").exists():
        with session.chdir(ts):
            session.run("npm", "ci", "--no-audit", "--no-fund", external=True)


def _npm_ci(session: nox.Session, directory: pathlib.Path) -> None:
    if not (directory / "node_modules").is_dir():
        with session.chdir(directory):
            session.run("npm", "ci", "--no-audit", "--no-fund", external=True)


def _build_clients(session: nox.Session) -> None:
    session.run("python", "-c", "from rigger.v1 import rigger_pb2, rigger_pb2_grpc")
    session.run("python", "-c", "import conformance.executors.python.executor")
    for module in (ROOT / "clients" / "go", ROOT / "conformance" / "executors" / "go"):
        with session.chdir(module):
            session.run("go", "vet", "./...", external=True)
            session.run("go", "build", "./...", external=True)
    for package in (ROOT / "clients" / "ts", ROOT / "conformance" / "executors" / "ts"):
        _npm_ci(session, package)
        with session.chdir(package):
            session.run("npm", "run", "--silent", "build", external=True)


def _generate(session: nox.Session, *, check: bool) -> None:
    _install_generators(session)
    session.install("-e", ".")
    session.run("buf", "generate")
    session.run("buf", "generate", "--template", HARNESS_TEMPLATE)
    _build_clients(session)
    if check:
        status = session.run(
            "git", "status", "--porcelain", "--", *GEN_DIRS, external=True, silent=True
        )
        if status and str(status).strip():
            session.error(
                "generated code is stale; run `nox -s codegen` and commit the result:\n"
                + str(status)
            )
        session.log("generated code is up to date")


@nox.session(default=False)
def planner_report(session: nox.Session) -> None:
    """The planner quality report on examples/'s PRDs: offline, and Ollama where one answers.

    Writes examples/planner-report/offline.md (commit it: a test fails when it
    is stale) and, when an Ollama answers at $OLLAMA_HOST (default
    http://127.0.0.1:11434), ollama.md beside it. `-- --model qwen3:8b`
    picks the Ollama model.
    """
    session.install("-e", ".")
    url = os.environ.get("OLLAMA_HOST", "http://127.0.0.1:11434")
    url = url if "://" in url else f"http://{url}"  # Ollama's own form: host:port
    session.run(
        "python", "-m", "rigger_server.planner.report", "--ollama-url", url, *session.posargs
    )


@nox.session(default=False)
def codegen(session: nox.Session) -> None:
    """Regenerate the clients and the harness code; `-- --check` fails if anything changed."""
    _generate(session, check="--check" in session.posargs)


@nox.session
def generated(session: nox.Session) -> None:
    """Fail when committed generated code differs from a fresh `nox -s codegen`."""
    _generate(session, check=True)


@nox.session
def tests(session: nox.Session) -> None:
    """The server's behaviour tests and the three sidecars, against a real server."""
    # The PostgreSQL extra: tests/test_pg_*.py run replicas on a throwaway cluster;
    # the MCP extra: tests/test_mcp.py drives `rig mcp` through the SDK's client.
    session.install("-e", ".[postgres,mcp]", *_group("test"))
    if shutil.which("go") is None or shutil.which("npm") is None:
        session.error("the sidecar tests need go and npm on PATH; see .ci/run")
    _go_install(session, "grpcurl", GRPCURL)  # the README walk-through test runs it
    # Three workers on two cores: the end-to-end tests mostly wait on server
    # processes (84 s with two workers, 76 s with three or four). Each file
    # stays on one worker, so a module's shared server starts once
    # (`-- -n 0` runs everything in this process).
    session.run(
        "pytest", "-n", "3", "--dist", "loadfile", *session.posargs, env={"PYTHONUTF8": "1"}
    )


@nox.session
def clients(session: nox.Session) -> None:
    """The clients' own tests: go test -race, node:test and pytest; and the Go executor's."""
    session.install("-e", ".", *_group("test"))
    session.run("pytest", "clients/python/tests", *session.posargs)
    # -count=1: the Go tests read clients/README.md, which go test's cache does not watch.
    for module in (ROOT / "clients" / "go", ROOT / "conformance" / "executors" / "go"):
        with session.chdir(module):
            session.run("go", "test", "-race", "-count=1", "./...", external=True)
    ts = ROOT / "clients" / "ts"
    _npm_ci(session, ts)
    with session.chdir(ts):
        session.run("npm", "test", "--silent", external=True)


@nox.session(default=False)
def consumers(session: nox.Session) -> None:
    """Each client installed into a scratch project outside the repo, run against `rig grpc`."""
    session.install("-e", ".")  # the server the consumers talk to
    _npm_ci(session, ROOT / "clients" / "ts")  # `npm pack` builds the client with its dev tools
    session.run("python", "tests/consumers/check.py", *session.posargs)


@nox.session(default=False)
def metrics(session: nox.Session) -> None:
    """A real Prometheus scrapes `rig grpc --metrics-port` under load; every listed series moves."""
    # Prometheus itself is Debian's `prometheus` package (.ci/run installs it).
    session.install("-e", ".")
    # The repository root, for the test kit (as pytest's `pythonpath` gives the tests).
    session.run(
        "python", "tests/prometheus/check.py", *session.posargs, env={"PYTHONPATH": str(ROOT)}
    )


@nox.session
def conformance(session: nox.Session) -> None:
    """The shared conformance suite through the Python, Go and TypeScript clients."""
    session.install("-e", ".", *_group("conformance"))
    session.run("python", "-m", "conformance", *session.posargs)
    if not session.posargs:
        # The contract must hold when `rig grpc --workers 2` splits the streams
        # over processes too; one client is enough to show the server's side.
        session.run(
            "python",
            "-m",
            "conformance",
            "--client",
            "python",
            "--server-args=--workers 2",
            "--report-dir",
            "build/conformance/workers-2",
        )


@contextlib.contextmanager
def _rig_server(session: nox.Session, directory: pathlib.Path) -> Iterator[str]:
    """`rig grpc` on a free port in `directory`, until the block ends; yields HOST:PORT."""
    directory.mkdir(parents=True, exist_ok=True)
    ready = directory / "ready.json"
    ready.unlink(missing_ok=True)
    rig = pathlib.Path(session.bin) / "rig"
    args = [str(rig), "grpc", "--port", "0", "--db", str(directory / "tasks.db")]
    with (directory / "server.log").open("w") as log:
        server = subprocess.Popen(
            [*args, "--ready-file", str(ready)], cwd=directory, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():  # written once it serves
            if server.poll() is not None or time.monotonic() > deadline:
                session.error(f"rig grpc did not start; see {directory / 'server.log'}")
            time.sleep(0.05)
        yield f"127.0.0.1:{json.loads(ready.read_text())['port']}"
    finally:
        server.terminate()
        server.wait(30)


@nox.session(default=False)
def conformance_target(session: nox.Session) -> None:
    """The suite through --target (a `rig grpc` this session starts) and --target-cmd (mutants)."""
    session.install("-e", ".", *_group("conformance"))
    scratch = ROOT / "build" / "conformance-target"
    shutil.rmtree(scratch, ignore_errors=True)
    # A server someone else started, in its own project root: every run shares
    # it, one at a time, puts its files under that root and archives its tasks.
    root = scratch / "server"
    with _rig_server(session, root) as address:
        session.run(
            "python", "-m", "conformance", "--target", address, "--target-root", str(root),
            *session.posargs,
        )  # fmt: skip
        left = _live_tasks(session, address)
        if left:
            session.error(f"--target left {left} live tasks in the server it was pointed at")
        if (root / "rigger-conformance").exists():
            session.error(f"--target left files in {root / 'rigger-conformance'}")
    # A server per run from a command that writes no ready file: the self-test's
    # mutants, each of which the suite must still catch through that path; as a
    # shell command line, so the runner's quoting for the shell is used throughout.
    python = pathlib.Path(session.bin) / "python"
    mutant = (
        f"cd {{dir}} && exec env PYTHONPATH={shlex.quote(str(ROOT))} {shlex.quote(str(python))} "
        "-m conformance.selftest.mutants --mutant {mutant} grpc --port {port} --db tasks.db {args}"
    )
    session.run("python", "-m", "conformance", "--self-test", "--target-cmd", mutant)


def _live_tasks(session: nox.Session, address: str) -> int:
    """How many tasks a server lists (archived ones left out)."""
    count = (
        "import sys, grpc; from rigger.v1 import rigger_pb2 as pb, rigger_pb2_grpc as rpc; "
        "stub = rpc.RiggerServiceStub(grpc.insecure_channel(sys.argv[1])); "
        "print(stub.ListTasks(pb.ListTasksRequest(limit=1)).total_count)"
    )
    said = session.run("python", "-c", count, address, silent=True)
    return int(str(said).strip())


@nox.session(default=False)
def conformance_second(session: nox.Session) -> None:
    """A second implementation: the server of proto/released/SERVER_REF, through --target-cmd.

    The server the skew check builds (build/skew/server-<commit>/, reused), as
    someone testing their own server would run the suite against it: every case
    and client mix its capabilities allow; the report (build/conformance/second/)
    says which it lacks.
    """
    session.install("-e", ".", *_group("conformance"))
    for package in (ROOT / "clients" / "ts", ROOT / "conformance" / "executors" / "ts"):
        _npm_ci(session, package)
    session.run("python", "-m", "conformance.skew", "--half", "second", *session.posargs)


@nox.session(default=False)
def skew(session: nox.Session) -> None:
    """Version skew: v1.0 clients against this server, these clients against the old server."""
    session.install("-e", ".", *_group("conformance"), *_group("codegen"))
    for name, module in GO_PLUGINS.items():
        _go_install(session, name, module)
    for package in (ROOT / "clients" / "ts", ROOT / "conformance" / "executors" / "ts"):
        _npm_ci(session, package)
    session.run("python", "-m", "conformance.skew", *session.posargs)


@nox.session(default=False)
def conformance_pg(session: nox.Session) -> None:
    """The conformance suite against two rig grpc replicas on a throwaway PostgreSQL."""
    session.install("-e", ".[postgres]", *_group("conformance"))
    args = session.posargs or ["--client", "python"]
    session.run(
        "python", "-m", "conformance", "--postgres", "--report-dir", "build/conformance/pg", *args
    )


@nox.session(default=False)
def conformance_selftest(session: nox.Session) -> None:
    """The conformance suite must fail against every mutant server."""
    session.install("-e", ".", *_group("conformance"))
    session.run("python", "-m", "conformance", "--self-test", *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Broadcast throughput and fanout latency; `-- --quick` for the reduced matrix."""
    # The PostgreSQL extra: `-- --db postgresql` runs replicas on a throwaway cluster.
    session.install("-e", ".[postgres,bench]")
    # The Go subscriber pool and the tonic ceiling, into build/bench/: Go's
    # build cache and cargo's target dir there make reruns cheap. Without
    # cargo the tonic ceiling is reported absent, not failed.
    session.run("python", "-m", "bench.binaries")
    session.run("python", "-m", "bench", *session.posargs)
