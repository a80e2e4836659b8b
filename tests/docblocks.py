"""The shell blocks of the docs, and who runs each.

Every fenced shell block (```bash) of README.md and docs/*.md is preceded by
one of two markers (tests/unit/test_docs.py checks it):

    <!-- run by tests/test_walkthrough.py -->
    <!-- not run: it serves until Ctrl-C -->

A test that runs blocks asks for its own here (`run_by`), so a block marked
as run by a test is one that test receives.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parent.parent
# The docs whose shell blocks must say who runs them.
DOCS = ("README.md", "docs")
# Fences that hold commands for a shell.
SHELLS = frozenset({"bash", "sh", "shell", "console", "zsh"})

_FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
_RUN_BY = re.compile(r"^<!-- run by (tests/[\w/]+\.py) -->$")
_NOT_RUN = re.compile(r"^<!-- not run: (.+\S) -->$")


@dataclasses.dataclass(frozen=True)
class Block:
    """A fenced code block of a doc, and the marker before it."""

    doc: str  # relative to the repository, e.g. "docs/operating.md"
    line: int  # of the opening fence, from 1
    lang: str
    text: str
    marker: str  # the line before the fence (blank lines skipped), or ""

    @property
    def runner(self) -> str | None:
        """The test file that runs this block, if its marker names one."""
        found = _RUN_BY.match(self.marker)
        return found.group(1) if found else None

    @property
    def not_run_reason(self) -> str | None:
        """Why this block is not run, if its marker says so."""
        found = _NOT_RUN.match(self.marker)
        return found.group(1) if found else None


def doc_paths() -> list[pathlib.Path]:
    """README.md and every page of docs/."""
    paths = [REPO / "README.md"]
    paths += sorted((REPO / "docs").glob("*.md"))
    return paths


def blocks(path: pathlib.Path) -> list[Block]:
    """Every fenced code block of the markdown file at `path`, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, lang = opening.groups()
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        before = [line.strip() for line in lines[:i] if line.strip()]
        found.append(
            Block(
                doc=path.relative_to(REPO).as_posix(),
                line=i + 1,
                lang=lang.lower(),
                text="\n".join(lines[i + 1 : j]) + "\n",
                marker=before[-1] if before else "",
            )
        )
        i = j + 1
    return found


def shell_blocks(path: pathlib.Path) -> list[Block]:
    """The blocks of `path` that hold shell commands."""
    return [block for block in blocks(path) if block.lang in SHELLS]


def run_by(doc: str, runner: str) -> list[str]:
    """The text of each shell block of `doc` (e.g. "README.md") marked as run by `runner`.

    `runner` is the calling test's `__file__`; the blocks come in the doc's order.
    """
    test = pathlib.Path(runner).resolve().relative_to(REPO).as_posix()
    return [block.text for block in shell_blocks(REPO / doc) if block.runner == test]
