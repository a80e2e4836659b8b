"""Planning in process: what GenerateTasksFromPRD reuses from the ParsePRD before it."""

from __future__ import annotations

import pathlib

import pytest
from rigger_server import prd as prd_files
from rigger_server.planner import OfflinePlanner
from rigger_server.planning import Planning
from rigger_server.tasks import TaskBook


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every markdown text the server parses from now on."""
    seen: list[str] = []
    real = prd_files.parse_prd

    def counting(markdown: str) -> prd_files.ParsedPrd:
        seen.append(markdown)
        return real(markdown)

    monkeypatch.setattr(prd_files, "parse_prd", counting)
    return seen


async def test_a_generation_right_after_parse_prd_does_not_parse_it_again(
    book: TaskBook, tmp_path: pathlib.Path, parses: list[str]
):
    (tmp_path / "PRD.md").write_text("# Rigger\n\n## Tasks\n\n- [ ] Ship it\n")
    planning = Planning(book, OfflinePlanner())
    prd = await planning.parse_prd("PRD.md")
    generated = await planning.generate_tasks(prd.id)
    assert [task.title for task in generated.tasks] == ["Ship it"]
    assert len(parses) == 1
