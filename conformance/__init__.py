"""Rigger's cross-language conformance suite.

Cases are YAML data (conformance/cases/); each language's executor carries
out instructions and reports raw observations; the Python runner judges them
all by one standard. `python -m conformance` runs it; conformance/README.md
explains how to write a case and how to add a language.
"""

from __future__ import annotations

import pathlib
import sys

# The harness protocol's generated Python code (rigger.conformance.v1) lives
# in conformance/gen/python, outside the client distribution, so that no user
# installs it. `rigger` is a namespace package, so this directory joins the
# installed client's `rigger.v1` under one `rigger` once it is on the path.
_HARNESS_GEN = str(pathlib.Path(__file__).resolve().parent / "gen" / "python")
if _HARNESS_GEN not in sys.path:
    sys.path.append(_HARNESS_GEN)
