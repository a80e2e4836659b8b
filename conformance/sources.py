"""Where the suite finds what it ships beside its code: a checkout, or the installed copy.

From a checkout of the repository the executors build against the clients
in it (clients/go, clients/ts), the runner reads the first release's contract
from proto/released/, and runs and reports go to build/conformance/.

The `rigger-conformance` distribution (conformance/pyproject.toml) carries
copies of those clients and of that contract in `conformance/_sources/`,
laid out as in the repository. It builds the Go and TypeScript executors in
a cache directory of the user's on first use (executors/launch.py), and runs
and reports go to build/conformance/ under the directory it is started in.
"""

from __future__ import annotations

import os
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent
# Present only in the installed distribution (its pyproject puts them there).
SHIPPED = PACKAGE / "_sources"
INSTALLED = SHIPPED.is_dir()
# A tree holding clients/{go,ts} and proto/released/, as the repository does.
ROOT = SHIPPED if INSTALLED else PACKAGE.parent
RELEASED_IMAGE = ROOT / "proto" / "released" / "rigger-v1.0.0.binpb"
# Runs' scratch directories and reports.
BUILD_DIR = (pathlib.Path.cwd() if INSTALLED else PACKAGE.parent) / "build" / "conformance"
CACHE_NAME = "rigger-conformance"


def cache_dir() -> pathlib.Path:
    """Where the installed distribution builds its executors: $XDG_CACHE_HOME or ~/.cache."""
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / CACHE_NAME
