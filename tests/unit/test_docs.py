"""The docs stay true: their commands are run or say why not, and what they name exists.

- Every shell block of README.md and docs/*.md is marked as run by a test
  that reads it (tests/docblocks.py), or as not run, with the reason.
- Every relative link of the docs leads to a file, and to a heading there.
- docs/operating.md lists every `rig grpc` flag with its default, every
  documented constant of limits.py, and every metric the server exports;
  docs/developing.md every nox session.
- SECURITY.md's table names, in each row, tests that exist.
"""

from __future__ import annotations

import argparse
import ast
import functools
import pathlib
import re

import docblocks
import pytest
from prometheus_client import Counter
from prometheus_client.metrics import MetricWrapperBase
from rigger_server import limits, metrics
from rigger_server.cli import build_parser

REPO = docblocks.REPO
README = REPO / "README.md"
OPERATING = REPO / "docs" / "operating.md"
SECURITY = REPO / "SECURITY.md"
README_MOST_LINES = 300
# The docs whose links must lead somewhere.
LINKED = [
    README,
    *sorted((REPO / "docs").glob("*.md")),
    SECURITY,
    REPO / "CHANGELOG.md",
    REPO / "ARCHITECTURE.md",
    REPO / "clients" / "README.md",
    *sorted((REPO / "clients").glob("*/README.md")),
]


def _read(path: pathlib.Path) -> str:
    return path.read_text(encoding="utf-8")


SHELL_BLOCKS = [block for path in docblocks.doc_paths() for block in docblocks.shell_blocks(path)]


def _where(block: docblocks.Block) -> str:
    return f"{block.doc}:{block.line}"


def test_the_readme_is_short_enough_to_read():
    assert len(_read(README).splitlines()) <= README_MOST_LINES


def test_the_docs_hold_shell_blocks():
    # The check below would pass on docs it could not read.
    assert {block.doc for block in SHELL_BLOCKS} >= {"README.md", "docs/operating.md"}


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=_where)
def test_every_shell_block_is_run_by_a_test_or_says_why_not(block):
    assert block.runner or block.not_run_reason, (
        f"{_where(block)}: put `<!-- run by tests/<file>.py -->` or "
        f"`<!-- not run: <reason> -->` on the line before the block, not {block.marker!r}"
    )


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=_where)
def test_shell_blocks_are_fenced_as_bash(block):
    assert block.lang == "bash", f"{_where(block)}: fence shell commands as ```bash"


@pytest.mark.parametrize(
    ("doc", "runner"),
    sorted({(block.doc, block.runner) for block in SHELL_BLOCKS if block.runner}),
)
def test_a_test_named_as_running_blocks_reads_them_from_the_doc(doc, runner):
    path = REPO / runner
    assert path.is_file(), f"{doc} names {runner}, which does not exist"
    source = _read(path)
    assert "docblocks.run_by(" in source, f"{runner} does not take its blocks from docblocks"
    assert f'"{doc}"' in source, f"{runner} does not read {doc}"


# --- links --------------------------------------------------------------------

_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@functools.cache
def _anchors(path: pathlib.Path) -> frozenset[str]:
    text = re.sub(r"```.*?```", "", _read(path), flags=re.S)
    return frozenset(_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M))


def _links(path: pathlib.Path) -> list[str]:
    text = re.sub(r"```.*?```", "", _read(path), flags=re.S)
    text = re.sub(r"(`+)[^`].*?\1", "", text, flags=re.S)  # code spans
    return [
        link
        for link in _LINK.findall(text)
        if not re.match(r"[a-z]+:", link)  # https:, mailto:
    ]


@pytest.mark.parametrize("path", LINKED, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_leads_to_a_file_and_a_heading(path):
    broken = []
    for link in _links(path):
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        if not file.exists():
            broken.append(f"{link}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{link}: no heading #{anchor} in {file.relative_to(REPO)}")
    assert broken == []


def test_the_slug_is_githubs():
    assert _slug("Many sidecars: the batched stream") == "many-sidecars-the-batched-stream"
    assert _slug("`rig watch` and `--state-file`") == "rig-watch-and---state-file"
    assert _slug("TLS, and rotating certificates") == "tls-and-rotating-certificates"


# --- operating.md: flags, constants, metrics ----------------------------------


def _grpc_options() -> list[argparse.Action]:
    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [a for a in commands.choices["grpc"]._actions if a.option_strings != ["-h", "--help"]]


@pytest.mark.parametrize("action", _grpc_options(), ids=lambda a: a.option_strings[0])
def test_operating_lists_every_rig_grpc_flag_with_its_default(action):
    flag = action.option_strings[0]
    rows = [
        line
        for line in _read(OPERATING).splitlines()
        if line.startswith("| `") and re.match(rf"\| `{re.escape(flag)}[ `]", line)
    ]
    assert rows, f"docs/operating.md has no table row for {flag}"
    if action.default not in (None, False):
        default = re.split(r"(?<!\\)\|", rows[0])[2]  # `\|` is a pipe inside a cell
        assert str(action.default) in default, f"{flag}: its default is {action.default}"


def _documented_constants() -> list[str]:
    names = [
        name
        for name, value in vars(limits).items()
        if name.isupper() and isinstance(value, int | float) and name not in ("KIB", "MIB")
    ]
    return names + sorted(limits.WITHOUT_FLAG)


@pytest.mark.parametrize("name", _documented_constants())
def test_operating_names_every_documented_constant(name):
    assert f"`{name}`" in _read(OPERATING)


def _series() -> list[str]:
    found = []
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            suffix = "_total" if isinstance(value, Counter) else ""
            found.append(value._name + suffix)
    return found


def test_the_server_exports_metrics():
    assert "rigger_grpc_calls_total" in _series()


@pytest.mark.parametrize("series", _series())
def test_operating_describes_every_metric(series):
    assert f"`{series}" in _read(OPERATING)


# --- developing.md: every nox session -------------------------------------------


def _nox_sessions() -> list[str]:
    tree = ast.parse(_read(REPO / "noxfile.py"))
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any("nox.session" in ast.unparse(d) for d in node.decorator_list)
    ]


def test_the_noxfile_has_sessions():
    assert {"lint", "tests", "conformance"} <= set(_nox_sessions())


@pytest.mark.parametrize("session", _nox_sessions())
def test_developing_lists_every_nox_session(session):
    assert f"| `nox -s {session}` |" in _read(REPO / "docs" / "developing.md")


# --- SECURITY.md: every row names tests that exist ----------------------------

_TEST_REF = re.compile(r"`((?:tests|conformance)/[\w/.-]+\.(?:py|yaml))::([\w:]+)(\[[^\]]*\])?`")


def _security_rows() -> list[tuple[str, str]]:
    """(surface, tests cell) of each row of SECURITY.md's table."""
    rows = []
    for line in _read(SECURITY).splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 4 and not set(cells[0]) <= {"-", ":"}:
            rows.append((cells[0], cells[3]))
    return rows[1:]  # the header


def _defines(path: pathlib.Path, name: str) -> bool:
    """Whether the test file at `path` defines `name` (a function, or Class::method)."""
    if path.suffix == ".yaml":
        return re.search(rf"^\s*- name: {re.escape(name)}\s*$", _read(path), re.M) is not None
    *classes, function = name.split("::")
    scope: list[ast.stmt] = ast.parse(_read(path)).body
    for cls in classes:
        found = [n for n in scope if isinstance(n, ast.ClassDef) and n.name == cls]
        if not found:
            return False
        scope = found[0].body
    return any(
        isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == function for n in scope
    )


def test_security_md_has_its_table():
    assert len(_security_rows()) >= 20


@pytest.mark.parametrize(("surface", "tests"), _security_rows(), ids=lambda v: v[:40])
def test_every_row_of_security_md_names_tests_that_exist(surface, tests):
    named = _TEST_REF.findall(tests)
    assert named, f"{surface!r} names no test as `tests/<file>.py::<test>`"
    for file, name, _ in named:
        path = REPO / file
        assert path.is_file(), f"{surface!r}: {file} does not exist"
        assert _defines(path, name), f"{surface!r}: {file} has no {name}"


def test_the_check_of_named_tests_reads_functions_classes_and_cases():
    here = pathlib.Path(__file__)
    assert _defines(here, "test_the_check_of_named_tests_reads_functions_classes_and_cases")
    assert not _defines(here, "test_that_is_not_here")
    cases = REPO / "conformance" / "cases" / "security.yaml"
    assert _defines(cases, "security_mtls_without_certificate_refused")
    assert not _defines(cases, "security_mtls")
