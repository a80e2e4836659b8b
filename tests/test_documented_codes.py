"""Every test conformance/documented_codes.yaml names, for a code no case can reach, exists.

A case cannot start a model or rotate tokens mid-call, so the file names, for
each such code, the test that checks it instead; a test renamed or moved
must take the file's pointer with it.
"""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).parents[1]
DOCUMENTED = (ROOT / "conformance" / "documented_codes.yaml").read_text(encoding="utf-8")
NAMED = sorted(set(re.findall(r"(tests/[\w/]+\.py)::(\w+)", DOCUMENTED)))


def test_the_file_names_the_tests_of_the_codes_no_case_reaches():
    assert len(NAMED) >= 5


@pytest.mark.parametrize(("path", "name"), NAMED, ids=[f"{p}::{n}" for p, n in NAMED])
def test_each_named_test_exists(path, name):
    source = ROOT / path
    assert source.is_file(), path
    assert re.search(rf"^(async )?def {name}\(", source.read_text(encoding="utf-8"), re.MULTILINE)
