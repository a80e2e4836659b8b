"""How each language's executor is built and launched.

From a checkout, the Go and TypeScript executors are built in place, against
the clients beside them (conformance/README.md, "Adding a language"). The
installed distribution (conformance/sources.py) copies their sources and the
clients' into a cache directory of the user's, laid out as in the
repository, and builds them there once per version of those sources; a
missing toolchain is named with what to do instead.

A fourth language adds one entry to LAUNCHERS (and its executor under
executors/); nothing else changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator

from conformance import sources

# The repository the executors are built from when run from a checkout.
REPO = sources.PACKAGE.parent
BUILD_DIR = sources.BUILD_DIR
EXECUTORS = sources.PACKAGE / "executors"
LANGUAGES = ("go", "python", "ts")
STDERR_TAIL = 4000
# What a build copies into the cache, and what it leaves out of those trees.
GO_TREES = ("clients/go", "conformance/executors/go")
TS_TREES = ("clients/ts", "conformance/executors/ts")
NOT_SOURCES = frozenset({"node_modules", "dist", "dist-test", "bin", "__pycache__"})
BUILT = ".built"
SKIP_HINT = "or leave that client out: --client python"


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
        f"the {language} executor is missing: {path} does not exist "
        "(see conformance/README.md, 'Adding a language')"
    )


def _source_files(tree: pathlib.Path) -> Iterator[pathlib.Path]:
    for path in sorted(tree.rglob("*")):
        if path.is_file() and not NOT_SOURCES & set(path.relative_to(tree).parts):
            yield path


def _cache_entry(trees: tuple[str, ...]) -> pathlib.Path:
    """The cache directory for the installed sources of `trees`: one per their content."""
    digest = hashlib.sha256()
    for tree in trees:
        root = _shipped(tree)
        for path in _source_files(root):
            digest.update(f"{tree}/{path.relative_to(root)}\0".encode())
            digest.update(path.read_bytes())
    return sources.cache_dir() / f"{trees[1].rpartition('/')[2]}-{digest.hexdigest()[:16]}"


def _copy(trees: tuple[str, ...], target: pathlib.Path) -> None:
    """The installed sources of `trees` into `target`, laid out as in the repository, so
    the executors' relative references to their clients hold."""
    for tree in trees:
        root = _shipped(tree)
        for path in _source_files(root):
            copy = target / tree / path.relative_to(root)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)


def _shipped(tree: str) -> pathlib.Path:
    """Where the installed distribution keeps a tree of the repository."""
    if tree.startswith("conformance/"):
        return sources.PACKAGE / tree.removeprefix("conformance/")
    return sources.SHIPPED / tree


@contextlib.contextmanager
def _building(target: pathlib.Path) -> Iterator[bool]:
    """Hold the cache entry's lock while building; yields whether it still needs building.

    Two suites started at once build an executor once: the second waits.
    """
    target.mkdir(parents=True, exist_ok=True)
    with (target / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        needed = not (target / BUILT).exists()
        yield needed
        if needed:
            (target / BUILT).write_text("")


def _tool(name: str, language: str, needs: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ExecutorUnavailable(
            f"the {language} executor needs {needs} (`{name}` on PATH); install it, {SKIP_HINT}"
        )
    return found


def _go() -> list[str]:
    go = _tool("go", "go", "Go 1.26 or newer")
    if sources.INSTALLED:
        target = _cache_entry(GO_TREES)
        binary = target / "bin" / "rigger-conformance-go"
        with _building(target) as needed:
            if needed or not binary.exists():
                _copy(GO_TREES, target)
                _run(
                    [go, "build", "-o", str(binary), "."],
                    target / GO_TREES[1],
                    "building the go executor",
                )
        return [str(binary)]
    source = EXECUTORS / "go"
    if not (source / "go.mod").is_file():
        raise _missing("go", source / "go.mod")
    binary = BUILD_DIR / "bin" / "rigger-conformance"
    binary.parent.mkdir(parents=True, exist_ok=True)
    # Its own module: it builds against the client in clients/go (a replace
    # directive), so it always tests the checkout's client.
    _run([go, "build", "-o", str(binary), "."], source, "building the go executor")
    return [str(binary)]


def _build_ts(client: pathlib.Path, source: pathlib.Path, npm: str, *, fresh: bool) -> None:
    # The executor links the client (a file: dependency), so it runs the
    # client's freshly built dist/ rather than an installed copy.
    if fresh or not (client / "node_modules").is_dir():
        _run([npm, "ci", "--no-audit", "--no-fund"], client, "installing the ts client")
    _run([npm, "run", "--silent", "build"], client, "building the ts client")
    if fresh or not (source / "node_modules").is_dir():
        _run([npm, "ci", "--no-audit", "--no-fund"], source, "installing the ts executor")
    _run([npm, "run", "--silent", "build"], source, "building the ts executor")


def _ts() -> list[str]:
    node = _tool("node", "ts", "Node.js 20 or newer")
    npm = _tool("npm", "ts", "npm")
    if sources.INSTALLED:
        target = _cache_entry(TS_TREES)
        client, source = target / TS_TREES[0], target / TS_TREES[1]
        with _building(target) as needed:
            if needed:
                _copy(TS_TREES, target)
                _build_ts(client, source, npm, fresh=True)
    else:
        client, source = REPO / "clients" / "ts", EXECUTORS / "ts"
        if not (source / "package.json").is_file():
            raise _missing("ts", source / "package.json")
        _build_ts(client, source, npm, fresh=False)
    script = source / "dist" / "src" / "executor.js"
    if not script.is_file():
        raise ExecutorUnavailable(f"`npm run build` did not produce {script}")
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
