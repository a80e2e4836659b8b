"""The committed planner report (examples/planner-report/offline.md) is the offline planner's."""

from __future__ import annotations

import pathlib

from rigger_server.planner.report import OFFLINE_REPORT, PRDS, render_offline

ROOT = pathlib.Path(__file__).resolve().parent.parent


async def test_the_committed_offline_planner_report_is_current():
    committed = (ROOT / OFFLINE_REPORT).read_text(encoding="utf-8")
    assert await render_offline(ROOT) == committed, (
        f"{OFFLINE_REPORT} is stale: run `nox -s planner_report` and commit it"
    )


def test_the_report_covers_three_prds_of_different_shapes():
    assert len(PRDS) == 3
    for path, _ in PRDS:
        assert f"## {path}: " in (ROOT / OFFLINE_REPORT).read_text(encoding="utf-8")
