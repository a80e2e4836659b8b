"""Old clients: the three clients generated from a release's image, and executors on them.

`python -m conformance --client-gen v1.0` builds the executors against them
(see conformance/skew/__init__.py for how each language is swapped).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import sys

from conformance.executors.launch import EXECUTORS, LAUNCHERS, REPO, ExecutorUnavailable
from conformance.skew.steps import SKEW_DIR, SkewError, run_step
from conformance.targets.capabilities import HEAD, RELEASED_IMAGE, Schema

TEMPLATE = pathlib.Path(__file__).resolve().parent / "buf.gen.yaml"
OLD_SCHEMAS = {"v1.0": RELEASED_IMAGE}


def gen_dir(release: str) -> pathlib.Path:
    """Where the clients generated from a release's image live."""
    return SKEW_DIR / release / "gen"


def client_schema(name: str) -> Schema:
    """The schema the executors are built against: `head` or a release."""
    if name == "head":
        return HEAD
    return Schema.of_image(name, OLD_SCHEMAS[name])


def generate(release: str) -> pathlib.Path:
    """Generate the three clients from the release's image (buf and the clients' plugins)."""
    out = gen_dir(release)
    buf = shutil.which("buf")
    if buf is None:
        raise SkewError("generating the old clients needs `buf` (the codegen group: nox -s skew)")
    for plugin in (".bin/protoc-gen-go", ".bin/protoc-gen-go-grpc"):
        if not (REPO / plugin).exists():
            raise SkewError(f"{plugin} is missing: `nox -s codegen` (or nox -s skew) installs it")
    if not (REPO / "clients/ts/node_modules/.bin/protoc-gen-es").exists():
        raise SkewError("protoc-gen-es is missing: run `npm ci` in clients/ts")
    image = OLD_SCHEMAS[release]
    run_step(
        [buf, "generate", str(image), "--template", str(TEMPLATE), "-o", str(out)],
        REPO,
        f"generating the {release} clients",
    )
    (out / "IMAGE.sha256").write_text(hashlib.sha256(image.read_bytes()).hexdigest() + "\n")
    return out


def _generated(release: str) -> pathlib.Path:
    out = gen_dir(release)
    stamp = out / "IMAGE.sha256"
    image = OLD_SCHEMAS[release]
    if (
        not stamp.is_file()
        or stamp.read_text().strip() != hashlib.sha256(image.read_bytes()).hexdigest()
    ):
        raise ExecutorUnavailable(
            f"the {release} clients are not generated (or are stale) in "
            f"{out.relative_to(REPO)}: run `python -m conformance.skew --prepare` (nox -s skew)"
        )
    return out


def _python(release: str) -> list[str]:
    gen = _generated(release) / "python"
    path = os.pathsep.join(p for p in (str(gen), os.environ.get("PYTHONPATH", "")) if p)
    # `env`: the executor process gets the old rigger.v1 first on its path.
    return ["env", f"PYTHONPATH={path}", sys.executable, "-m", "conformance.executors.python"]


def _go(release: str) -> list[str]:
    gen = _generated(release) / "go"
    go = shutil.which("go")
    if go is None:
        raise ExecutorUnavailable("the go executor needs `go` on PATH")
    base = SKEW_DIR / release / "go"
    client = base / "client"
    shutil.rmtree(client, ignore_errors=True)
    (client / "rigger").mkdir(parents=True)
    source = REPO / "clients" / "go"
    for name in ("go.mod", "go.sum"):
        shutil.copy2(source / name, client / name)
    # Only the helper the executor uses: Dial touches no generated code.
    shutil.copy2(source / "rigger" / "dial.go", client / "rigger" / "dial.go")
    shutil.copytree(gen / "rigger", client / "gen" / "rigger")
    modfile = base / "executor.mod"
    text = (EXECUTORS / "go" / "go.mod").read_text()
    replaced = text.replace("=> ../../../clients/go", f"=> {client}")
    if replaced == text:
        raise ExecutorUnavailable("conformance/executors/go/go.mod no longer replaces clients/go")
    modfile.write_text(replaced)
    shutil.copy2(EXECUTORS / "go" / "go.sum", base / "executor.sum")
    binary = SKEW_DIR / release / "bin" / "rigger-conformance"
    binary.parent.mkdir(parents=True, exist_ok=True)
    try:
        run_step(
            [go, "build", f"-modfile={modfile}", "-o", str(binary), "."],
            EXECUTORS / "go",
            f"building the go executor against the {release} client",
        )
    except SkewError as exc:
        raise ExecutorUnavailable(str(exc)) from None
    return [str(binary)]


def _link(link: pathlib.Path, target: pathlib.Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=True)


def _ts(release: str) -> list[str]:
    gen = _generated(release) / "ts"
    node, _ = LAUNCHERS["ts"]()  # builds the HEAD client and executor, which get copied
    base = SKEW_DIR / release / "ts"
    shutil.rmtree(base, ignore_errors=True)
    client, executor = base / "client", base / "executor"
    head_client, head_executor = REPO / "clients" / "ts", EXECUTORS / "ts"
    shutil.copytree(head_client / "dist" / "src", client / "dist" / "src")
    shutil.copy2(head_client / "package.json", client / "package.json")
    old = gen / "rigger" / "v1" / "rigger_pb.js"
    (client / "dist" / "gen" / "rigger" / "v1").mkdir(parents=True)
    shutil.copy2(old, client / "dist" / "gen" / "rigger" / "v1" / "rigger_pb.js")
    _link(client / "node_modules", head_client / "node_modules")
    shutil.copytree(head_executor / "dist", executor / "dist")
    shutil.copy2(head_executor / "package.json", executor / "package.json")
    for scope in ("@bufbuild", "@connectrpc"):
        _link(executor / "node_modules" / scope, head_executor / "node_modules" / scope)
    _link(executor / "node_modules" / "@rigger-dev" / "client", client)
    return [node, str(executor / "dist" / "src" / "executor.js")]


SKEW_LAUNCHERS = {"go": _go, "python": _python, "ts": _ts}


def build_commands(release: str, languages: tuple[str, ...]) -> dict[str, list[str]]:
    """The executors built against a release's generated clients; ExecutorUnavailable if not."""
    commands: dict[str, list[str]] = {}
    problems: list[str] = []
    for language in languages:
        try:
            commands[language] = SKEW_LAUNCHERS[language](release)
        except ExecutorUnavailable as exc:
            problems.append(f"{language} ({release} clients): {exc}")
    if problems:
        raise ExecutorUnavailable("\n".join(problems))
    return commands
