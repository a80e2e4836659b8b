"""How each language's executor is built and launched.

A fourth language adds one entry to LAUNCHERS (and its executor under
executors/); nothing else changes.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
from collections.abc import Callable

# The repository the executors are built from: this checkout.
REPO = pathlib.Path(__file__).resolve().parent.parent.parent
BUILD_DIR = REPO / "build" / "conformance"
EXECUTORS = REPO / "conformance" / "executors"
LANGUAGES = ("go", "python", "ts")
STDERR_TAIL = 4000


class ExecutorUnavailable(RuntimeError):
    """An executor could not be built or started; the message says what to do."""


def _run(command: list[str], cwd: pathlib.Path, what: str) -> None:
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ExecutorUnavailable(f"{what}: {command[0]} is not installed") from None
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-STDERR_TAIL:]
        raise ExecutorUnavailable(f"{what} failed ({' '.join(command)}):\n{output}")


def _python() -> list[str]:
    return [sys.executable, "-m", "conformance.executors.python"]


def _missing(language: str, path: pathlib.Path) -> ExecutorUnavailable:
    return ExecutorUnavailable(
        f"the {language} executor is missing: {path.relative_to(REPO)} does not exist "
        "(see conformance/README.md, 'Adding a language')"
    )


def _go() -> list[str]:
    source = EXECUTORS / "go"
    if not (source / "go.mod").is_file():
        raise _missing("go", source / "go.mod")
    go = shutil.which("go")
    if go is None:
        raise ExecutorUnavailable("the go executor needs `go` on PATH")
    binary = BUILD_DIR / "bin" / "rigger-conformance"
    binary.parent.mkdir(parents=True, exist_ok=True)
    # Its own module: it builds against the client in clients/go (a replace
    # directive), so it always tests the checkout's client.
    _run([go, "build", "-o", str(binary), "."], source, "building the go executor")
    return [str(binary)]


def _ts() -> list[str]:
    client, source = REPO / "clients" / "ts", EXECUTORS / "ts"
    if not (source / "package.json").is_file():
        raise _missing("ts", source / "package.json")
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        raise ExecutorUnavailable("the ts executor needs `node` and `npm` on PATH")
    # The executor links the client (a file: dependency), so it runs the
    # client's freshly built dist/ rather than an installed copy.
    if not (client / "node_modules").is_dir():
        _run([npm, "ci", "--no-audit", "--no-fund"], client, "installing the ts client")
    _run([npm, "run", "--silent", "build"], client, "building the ts client")
    if not (source / "node_modules").is_dir():
        _run([npm, "ci", "--no-audit", "--no-fund"], source, "installing the ts executor")
    _run([npm, "run", "--silent", "build"], source, "building the ts executor")
    script = source / "dist" / "src" / "executor.js"
    if not script.is_file():
        raise ExecutorUnavailable(f"`npm run build` did not produce {script.relative_to(REPO)}")
    return [node, str(script)]


# The launch command of each language's executor, built if needed. A fourth
# language adds one entry here (and an executor); nothing else changes.
LAUNCHERS: dict[str, Callable[[], list[str]]] = {"go": _go, "python": _python, "ts": _ts}


def build_commands(languages: tuple[str, ...]) -> dict[str, list[str]]:
    """Build every requested executor; ExecutorUnavailable names all that failed."""
    commands: dict[str, list[str]] = {}
    problems: list[str] = []
    for language in languages:
        launcher = LAUNCHERS.get(language)
        if launcher is None:
            problems.append(f"{language}: no such client (known: {', '.join(LAUNCHERS)})")
            continue
        try:
            commands[language] = launcher()
        except ExecutorUnavailable as exc:
            problems.append(f"{language}: {exc}")
    if problems:
        raise ExecutorUnavailable("\n".join(problems))
    return commands
