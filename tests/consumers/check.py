"""Install each client as a user would, outside the repository, and run a small program with it.

    python tests/consumers/check.py [python] [go] [ts]     # `nox -s consumers`

For each language it makes a scratch project in a temporary directory,
installs the client from this checkout — `pip install ./clients/python` into a
fresh venv, `npm install` of the `npm pack` tarball, a Go module with a
`replace` directive — checks what got installed (no harness code, the
promised entry points, the Go version asked of users), then runs the
language's consumer program (this directory) against a real `rig grpc`: it
adds a task and watches for its CREATED event. Exit status 0 when every
language passed.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Callable, Iterator

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
INSTALL_TIMEOUT_S = 600
RUN_TIMEOUT_S = 60
# The Go version the client module promises to need (clients/go/go.mod).
GO_FLOOR = "1.23.0"


class Failed(Exception):
    """A consumer check failed; the message says what and shows the output."""


def run(command: list[str], cwd: pathlib.Path, timeout: float = INSTALL_TIMEOUT_S) -> str:
    """Run a command; its stdout, or Failed with everything it printed."""
    print(f"  $ {' '.join(command)}", flush=True)
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise Failed(f"{command[0]} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


def expect_event(output: str, language: str) -> None:
    """The consumer printed its task's CREATED event."""
    want = f"TASK_EVENT_TYPE_CREATED from the {language} consumer"
    if output.strip() != want:
        raise Failed(f"expected {want!r}, the program printed {output!r}")


def free_port() -> int:
    """A port nothing listens on right now (rig binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def rig_grpc(workdir: pathlib.Path) -> Iterator[str]:
    """A real `rig grpc` on a free loopback port, with its own database."""
    port = free_port()
    log = (workdir / "rig.log").open("w")
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "rigger_server.cli", "grpc", "--host", "127.0.0.1"),
            *("--port", str(port), "--db", str(workdir / "tasks.db")),
        ],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if server.poll() is not None:
                raise Failed(f"rig grpc exited {server.returncode}:\n{_read(workdir / 'rig.log')}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise Failed("rig grpc did not listen within 30 s")
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _read(path: pathlib.Path) -> str:
    return path.read_text(errors="replace")[-4000:]


def check_python(scratch: pathlib.Path, address: str) -> None:
    """pip install ./clients/python into a fresh venv; the program runs with only that."""
    env = scratch / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    python = str(env / "bin" / "python")
    run([python, "-m", "pip", "install", "--quiet", str(REPO / "clients" / "python")], scratch)
    files = run([python, "-m", "pip", "show", "--files", "rigger-client"], scratch)
    requires = re.search(r"^Requires: (.*)$", files, re.MULTILINE)
    if requires is None or sorted(requires[1].split(", ")) != ["grpcio", "protobuf"]:
        raise Failed(f"rigger-client should need grpcio and protobuf only:\n{files}")
    for needed in ("rigger_client/py.typed", "rigger/v1/py.typed", "rigger/v1/rigger_pb2.pyi"):
        if needed not in files:
            raise Failed(f"the installed rigger-client lacks {needed}:\n{files}")
    if "conformance" in files:
        raise Failed(f"the installed rigger-client carries harness code:\n{files}")
    shutil.copy(HERE / "consumer.py", scratch)
    expect_event(run([python, "consumer.py", address], scratch, RUN_TIMEOUT_S), "python")


def check_ts(scratch: pathlib.Path, address: str) -> None:
    """npm install the packed tarball; the program type-checks against it, then runs."""
    npm, node = shutil.which("npm") or "npm", shutil.which("node") or "node"
    client = REPO / "clients" / "ts"
    packed = run([npm, "pack", "--silent", "--pack-destination", str(scratch)], client)
    tarball = scratch / packed.strip().splitlines()[-1]
    listing = run(["tar", "-tzf", str(tarball)], scratch)
    for needed in ("package/dist/src/index.js", "package/dist/src/index.d.ts"):
        if needed not in listing.splitlines():
            raise Failed(f"the tarball lacks {needed}:\n{listing}")
    if "conformance" in listing:
        raise Failed(f"the tarball carries harness code:\n{listing}")
    manifest = '{"name": "consumer", "private": true, "type": "module"}\n'
    (scratch / "package.json").write_text(manifest)
    run(
        [
            *(npm, "install", "--no-audit", "--no-fund", str(tarball)),
            *("typescript@5.9.3", "@types/node@20.19.43"),
        ],
        scratch,
    )
    shutil.copy(HERE / "consumer.ts", scratch)
    tsc = [node, str(scratch / "node_modules" / "typescript" / "bin" / "tsc")]
    run(
        [
            *tsc,
            *("--strict", "--target", "ES2022", "--module", "NodeNext"),
            *("--moduleResolution", "NodeNext", "--types", "node", "consumer.ts"),
        ],
        scratch,
    )
    run([str(scratch / "node_modules" / ".bin" / "rigger-sidecar"), "--help"], scratch)
    expect_event(run([node, "consumer.js", address], scratch, RUN_TIMEOUT_S), "ts")


def check_go(scratch: pathlib.Path, address: str) -> None:
    """A module that requires the client through a replace; `go mod tidy` keeps its Go version."""
    go = shutil.which("go") or "go"
    client = REPO / "clients" / "go"
    (scratch / "go.mod").write_text(
        "module example.com/consumer\n\n"
        f"go {GO_FLOOR}\n\n"
        "require github.com/rigger-dev/rigger/clients/go v0.0.0\n\n"
        f"replace github.com/rigger-dev/rigger/clients/go => {client}\n"
    )
    shutil.copy(HERE / "main.go", scratch)
    run([go, "mod", "tidy"], scratch)
    go_line = re.search(r"^go (\S+)$", (scratch / "go.mod").read_text(), re.MULTILINE)
    if go_line is None or go_line[1] != GO_FLOOR:
        gomod = _read(scratch / "go.mod")
        raise Failed(f"the client asks its users for a newer Go than {GO_FLOOR}:\n{gomod}")
    modules = run([go, "list", "-m", "all"], scratch)
    if "conformance" in modules:
        raise Failed(f"the client pulls harness code:\n{modules}")
    run([go, "build", "-o", "consumer", "."], scratch)
    expect_event(run([str(scratch / "consumer"), address], scratch, RUN_TIMEOUT_S), "go")


CHECKS: dict[str, Callable[[pathlib.Path, str], None]] = {
    "python": check_python,
    "go": check_go,
    "ts": check_ts,
}


def main(argv: list[str]) -> int:
    """Run the checks for the languages named (default: all); 0 when all passed."""
    languages = argv or list(CHECKS)
    unknown = sorted(set(languages) - set(CHECKS))
    if unknown:
        print(f"unknown language(s): {', '.join(unknown)} (known: {', '.join(CHECKS)})")
        return 2
    failed = []
    with tempfile.TemporaryDirectory(prefix="rigger-consumers-") as tmp:
        root = pathlib.Path(tmp)
        with rig_grpc(root) as address:
            for language in languages:
                print(f"{language}: a consumer project in {root / language}", flush=True)
                scratch = root / language
                scratch.mkdir()
                try:
                    CHECKS[language](scratch, address)
                except (Failed, subprocess.TimeoutExpired) as exc:
                    failed.append(language)
                    print(f"{language}: FAILED\n{exc}", flush=True)
                else:
                    print(f"{language}: ok", flush=True)
    print(f"{len(languages) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUTF8", "1")
    sys.exit(main(sys.argv[1:]))
