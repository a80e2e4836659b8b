"""The harness's compiled helpers: the Go subscriber pool and the tonic ceiling.

Both are built from source in this repository into build/bench/, and rebuilt
only as far as their sources changed: `go build` keeps Go's build cache, and
cargo reuses build/bench/cargo-target/ between runs (a cold build of the
ceiling compiles tokio, hyper and tonic: about a minute on 2 cores).

`python -m bench.binaries` builds both (the nox bench session runs it first);
the harness calls the same functions, so `python -m bench` alone works too.
A missing toolchain is not an error here: each function says what is missing,
and the harness reports the instrument as absent.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "bench"
GO_SOURCE = ROOT / "bench" / "gopool"
GO_POOL = BUILD / "rigger-gopool"
CARGO_MANIFEST = ROOT / "bench" / "ceiling-rs" / "Cargo.toml"
CARGO_TARGET = BUILD / "cargo-target"
TONIC_CEILING = CARGO_TARGET / "release" / "rigger-ceiling-tonic"


@dataclasses.dataclass(frozen=True, slots=True)
class Built:
    """A helper binary, or why there is none."""

    path: pathlib.Path | None
    missing: str = ""  # the reason, when path is None


def _run(args: list[str], cwd: pathlib.Path) -> str:
    """Run a build; its progress goes to stderr, its failure is an error with the output."""
    proc = subprocess.run(
        args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(args)}` failed:\n{proc.stdout}")
    return proc.stdout


def go_pool() -> Built:
    """Build (or find up to date) the Go subscriber pool."""
    go = shutil.which("go")
    if go is None:
        return Built(None, "`go` is not on PATH")
    BUILD.mkdir(parents=True, exist_ok=True)
    _run([go, "build", "-buildvcs=false", "-o", str(GO_POOL), "."], GO_SOURCE)
    return Built(GO_POOL)


def tonic_ceiling() -> Built:
    """Build (or find up to date) the tonic ceiling; absent, with the reason, without cargo."""
    cargo = shutil.which("cargo")
    if cargo is None:
        return Built(None, "`cargo` is not on PATH")
    BUILD.mkdir(parents=True, exist_ok=True)
    if not TONIC_CEILING.exists():
        # Only the cold build takes long enough to say so; `nox -s bench`
        # asks twice (bench.binaries, then the harness), and cargo answers
        # the second at once.
        print("building the tonic ceiling (cargo build --release; cold: ~1 min)", file=sys.stderr)
    args = [cargo, "build", "--release", "--locked", "--quiet"]
    args += ["--manifest-path", str(CARGO_MANIFEST), "--target-dir", str(CARGO_TARGET)]
    _run(args, ROOT)
    return Built(TONIC_CEILING)


def main() -> int:
    """Build both helpers and say where they are, or why one is absent."""
    for name, build in (("Go subscriber pool", go_pool), ("tonic ceiling", tonic_ceiling)):
        built = build()
        where = os.path.relpath(built.path, ROOT) if built.path else f"absent: {built.missing}"
        print(f"{name}: {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
