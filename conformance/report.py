"""What a suite run reports: the case x client matrix, report.json and junit.xml."""

from __future__ import annotations

import json
import pathlib
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any, TextIO

from conformance.suite import FAILED, KNOWN, PASSED, Outcome

MARKS = {PASSED: "✓", FAILED: "✗", KNOWN: "~"}
MIX = "mixed"


def summary(outcomes: Sequence[Outcome], languages: Sequence[str]) -> dict[str, Any]:
    """Counts of outcomes, overall and per client (a run counts for every client in it)."""

    def count(items: Sequence[Outcome]) -> dict[str, int]:
        return {kind: sum(o.outcome == kind for o in items) for kind in (PASSED, FAILED, KNOWN)}

    return {
        **count(outcomes),
        "per_client": {
            lang: count([o for o in outcomes if lang in o.run.languages]) for lang in languages
        },
    }


def write_json(
    path: pathlib.Path,
    outcomes: Sequence[Outcome],
    languages: Sequence[str],
    errors: Sequence[str],
    wall_s: float,
) -> None:
    """build/conformance/report.json: one result per run, and the summary."""
    results = [
        {
            "case": o.run.case.name,
            "run": o.run.id,
            "clients": list(o.run.languages),
            "roles": {instance: lang for instance, _, lang in o.run.instances()},
            "outcome": o.outcome,
            "detail": o.detail,
            "duration_s": round(o.result.duration_s, 3),
        }
        for o in outcomes
    ]
    document = {
        "results": results,
        "summary": summary(outcomes, languages),
        "errors": list(errors),
        "wall_time_s": round(wall_s, 1),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_junit(path: pathlib.Path, outcomes: Sequence[Outcome], errors: Sequence[str]) -> None:
    """build/conformance/junit.xml: a testcase per run; known failures are skipped."""
    suite = ET.Element(
        "testsuite",
        name="rigger-conformance",
        tests=str(len(outcomes) + len(errors)),
        failures=str(sum(o.outcome == FAILED for o in outcomes) + len(errors)),
        skipped=str(sum(o.outcome == KNOWN for o in outcomes)),
        time=f"{sum(o.result.duration_s for o in outcomes):.3f}",
    )
    for outcome in outcomes:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"conformance.{outcome.run.case.name}",
            name=outcome.run.id,
            time=f"{outcome.result.duration_s:.3f}",
        )
        if outcome.outcome == FAILED:
            failure = ET.SubElement(case, "failure", message=outcome.detail.split("\n")[0][:500])
            failure.text = outcome.detail + _log_text(outcome)
        elif outcome.outcome == KNOWN:
            ET.SubElement(case, "skipped", message=outcome.detail[:500])
    for index, error in enumerate(errors):
        case = ET.SubElement(suite, "testcase", classname="conformance.suite", name=f"error{index}")
        ET.SubElement(case, "failure", message=error[:500]).text = error
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def _log_text(outcome: Outcome) -> str:
    log = outcome.result.server_log
    return f"\n\nserver log (last lines):\n{log}" if log else ""


def _cell(items: Sequence[Outcome]) -> str:
    if not items:
        return "·"
    if len(items) == 1:
        return MARKS[items[0].outcome]
    bad = sum(o.outcome == FAILED for o in items)
    known = sum(o.outcome == KNOWN for o in items)
    if not bad and not known:
        return f"✓ {len(items)}"
    parts = [f"✗{bad}" if bad else "", f"~{known}" if known else ""]
    return " ".join(p for p in parts if p) + f"/{len(items)}"


def print_matrix(out: TextIO, outcomes: Sequence[Outcome], languages: Sequence[str]) -> None:
    """The case x client matrix: one column per client alone, one for every mix together."""
    columns = [*languages, MIX] if len(languages) > 1 else list(languages)
    names = sorted({o.run.case.name for o in outcomes})
    width = max([len(n) for n in names] + [4])
    header = f"{'case':<{width}}  " + "  ".join(f"{c:>8}" for c in columns)
    out.write(header + "\n" + "-" * len(header) + "\n")
    for name in names:
        runs = [o for o in outcomes if o.run.case.name == name]
        cells = []
        for column in columns:
            if column == MIX:
                chosen = [o for o in runs if not o.run.alone]
            else:
                chosen = [o for o in runs if o.run.alone and o.run.languages == (column,)]
            cells.append(f"{_cell(chosen):>8}")
        out.write(f"{name:<{width}}  " + "  ".join(cells) + "\n")
    out.write(
        f"\n{MARKS[PASSED]} passed   {MARKS[FAILED]} failed   {MARKS[KNOWN]} known-failing   "
        f"· not run   n = runs in the mixed column\n"
    )


def print_failures(out: TextIO, outcomes: Sequence[Outcome], limit: int = 40) -> None:
    """The details of every failed run (the first `limit` of them)."""
    failed = [o for o in outcomes if o.outcome == FAILED]
    for outcome in failed[:limit]:
        out.write(f"\n✗ {outcome.run.id}\n")
        for line in outcome.detail.splitlines():
            out.write(f"    {line}\n")
        if outcome.result.server_log:
            out.write("    server log (last lines):\n")
            for line in outcome.result.server_log.splitlines():
                out.write(f"      {line[:200]}\n")
    if len(failed) > limit:
        out.write(f"\n… and {len(failed) - limit} more failed runs; see report.json\n")
