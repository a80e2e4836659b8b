"""What a suite run reports: the case x client matrix, the capability x client table,
report.json and junit.xml."""

from __future__ import annotations

import json
import pathlib
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from conformance.suite.verdicts import FAILED, KNOWN, PASSED, SKIPPED, Outcome
from conformance.targets import capabilities

MARKS = {PASSED: "✓", FAILED: "✗", KNOWN: "~", SKIPPED: "-"}
OUTCOMES = (PASSED, FAILED, KNOWN, SKIPPED)
MIX = "mixed"
# The capability table's row for cases that need nothing the first release lacked.
CORE = "core"
CORE_DESCRIPTION = "needs nothing the first release lacked, nor any control over the server"


def summary(outcomes: Sequence[Outcome], languages: Sequence[str]) -> dict[str, Any]:
    """Counts of outcomes, overall and per client (a run counts for every client in it)."""

    def count(items: Sequence[Outcome]) -> dict[str, int]:
        return {kind: sum(o.outcome == kind for o in items) for kind in OUTCOMES}

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
    target: Mapping[str, Any] | None = None,
) -> None:
    """build/conformance/report.json: one result per run, the summary, the capability table.

    `target` describes the server under test and its profile.
    """
    results = [
        {
            "case": o.run.case.name,
            "run": o.run.id,
            "clients": list(o.run.languages),
            "roles": {instance: lang for instance, _, lang in o.run.instances()},
            "outcome": o.outcome,
            "detail": o.detail,
            **_why(o),
            "duration_s": round(o.result.duration_s, 3),
        }
        for o in outcomes
    ]
    document = {
        "target": dict(target or {}),
        "results": results,
        "summary": summary(outcomes, languages),
        "capabilities": capability_table(outcomes, languages),
        "errors": list(errors),
        "wall_time_s": round(wall_s, 1),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _why(outcome: Outcome) -> dict[str, Any]:
    """report.json's reasons: a known-failing run's entries, a skipped one's needs."""
    if outcome.outcome == KNOWN:
        return {
            "known_failing": [
                {"client": e.language, "case": e.pattern, "reason": e.reason}
                for e in outcome.entries
            ]
        }
    if outcome.skip is not None:
        said = dict(outcome.skip.because)
        return {
            "skipped_for": [
                {
                    "requirement": name,
                    "target": why,
                    **({"case": said[name]} if name in said else {}),
                }
                for name, why in outcome.skip.reasons
            ]
        }
    return {}


def write_junit(path: pathlib.Path, outcomes: Sequence[Outcome], errors: Sequence[str]) -> None:
    """build/conformance/junit.xml: a testcase per run; known failures are skipped."""
    suite = ET.Element(
        "testsuite",
        name="rigger-conformance",
        tests=str(sum(o.outcome != SKIPPED for o in outcomes) + len(errors)),
        failures=str(sum(o.outcome == FAILED for o in outcomes) + len(errors)),
        skipped=str(sum(o.outcome == KNOWN for o in outcomes)),
        time=f"{sum(o.result.duration_s for o in outcomes):.3f}",
    )
    for outcome in outcomes:
        if outcome.outcome == SKIPPED:
            continue  # counted below, one testcase per skipped case
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
            # JUnit has no "known failure": a skip whose message is the reason.
            known = ET.SubElement(case, "skipped", message=outcome.detail[:500])
            known.text = outcome.detail + "\n\n" + "\n".join(outcome.result.problems)
    skipped = {o.run.case.name: o.detail for o in outcomes if o.outcome == SKIPPED}
    for name, why in sorted(skipped.items()):
        case = ET.SubElement(suite, "testcase", classname=f"conformance.{name}", name=name)
        ET.SubElement(case, "skipped", message=why[:500]).text = why
    suite.set("tests", str(int(suite.get("tests", "0")) + len(skipped)))
    suite.set("skipped", str(int(suite.get("skipped", "0")) + len(skipped)))
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
    if all(o.outcome == SKIPPED for o in items):
        return f"{MARKS[SKIPPED]} {len(items)}"
    bad = sum(o.outcome == FAILED for o in items)
    known = sum(o.outcome == KNOWN for o in items)
    if not bad and not known:
        return f"✓ {len(items)}"
    parts = [f"✗{bad}" if bad else "", f"~{known}" if known else ""]
    return " ".join(p for p in parts if p) + f"/{len(items)}"


def print_matrix(out: TextIO, outcomes: Sequence[Outcome], languages: Sequence[str]) -> None:
    """The case x client matrix: one column per client alone, one for every mix together."""
    columns = _columns(outcomes, languages)
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
        f"{MARKS[SKIPPED]} skipped (see the capability table)   · not run   "
        f"n = runs in the mixed column\n"
    )


def _columns(outcomes: Sequence[Outcome], languages: Sequence[str]) -> list[str]:
    """A column per language, and `mixed` when some run mixes languages."""
    mixed = any(not o.run.alone for o in outcomes)
    return [*languages, MIX] if mixed else list(languages)


def _in_column(outcome: Outcome, column: str) -> bool:
    if column == MIX:
        return not outcome.run.alone
    return outcome.run.alone and outcome.run.languages == (column,)


def capability_table(outcomes: Sequence[Outcome], languages: Sequence[str]) -> dict[str, Any]:
    """capability → client column → outcome counts, and why runs were skipped.

    A run counts under every requirement of its case (conformance/targets/capabilities.py),
    a skipped one only under those the target lacks; a case with none counts
    under `core`.
    """
    rows: dict[str, dict[str, dict[str, int]]] = {}
    why: dict[str, dict[str, list[str]]] = {}
    requirements: dict[str, list[str]] = {}
    columns = _columns(outcomes, languages)
    for outcome in outcomes:
        case = outcome.run.case
        if case.name not in requirements:
            requirements[case.name] = capabilities.requirements(case) or [CORE]
        # A skipped run counts under what it was skipped for, not under all it needs.
        names = [n for n, _ in outcome.skip.reasons] if outcome.skip else requirements[case.name]
        for name in names:
            row = rows.setdefault(
                name,
                {column: dict.fromkeys(OUTCOMES, 0) for column in columns},
            )
            for column in row:
                if _in_column(outcome, column):
                    row[column][outcome.outcome] += 1
    for outcome in outcomes:
        if outcome.skip is None:
            continue
        for name, reason in outcome.skip.reasons:
            cases = why.setdefault(name, {}).setdefault(reason, [])
            if outcome.run.case.name not in cases:
                cases.append(outcome.run.case.name)
    kinds = {n: "" if n == CORE else capabilities.kind_of(n) for n in rows}
    ordered = sorted(rows, key=lambda n: (n != CORE, kinds[n], n))
    return {
        "rows": {name: rows[name] for name in ordered},
        "descriptions": {
            name: CORE_DESCRIPTION if name == CORE else capabilities.describe(name)
            for name in ordered
        },
        "skipped": {
            name: [{"reason": r, "cases": sorted(c)} for r, c in reasons.items()]
            for name, reasons in sorted(why.items())
        },
    }


def _table_cell(counts: Mapping[str, int]) -> str:
    parts = [f"{MARKS[kind]}{counts[kind]}" for kind in OUTCOMES if counts[kind]]
    return " ".join(parts) or "·"


def print_capabilities(out: TextIO, outcomes: Sequence[Outcome], languages: Sequence[str]) -> None:
    """The capability x client table (runs passed, failed, known, skipped), then why skipped."""
    table = capability_table(outcomes, languages)
    rows = table["rows"]
    if not rows:
        return
    columns = _columns(outcomes, languages)
    cells = {n: [_table_cell(rows[n][c]) for c in columns] for n in rows}
    width = max(len(n) for n in rows) + 2
    widths = [max([len(c)] + [len(cells[n][i]) for n in rows]) for i, c in enumerate(columns)]
    header = f"{'capability':<{width}}  " + "  ".join(
        f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)
    )
    out.write("\n" + header + "\n" + "-" * len(header) + "\n")
    for name in rows:
        line = "  ".join(f"{cell:>{w}}" for cell, w in zip(cells[name], widths, strict=True))
        out.write(f"{name:<{width}}  {line}\n")
    out.write(
        f"\nruns: {MARKS[PASSED]} passed  {MARKS[FAILED]} failed  {MARKS[KNOWN]} known-failing  "
        f"{MARKS[SKIPPED]} skipped; a run counts under every capability its case needs "
        "(a skipped one under what the target lacks)\n"
    )
    for name, reasons in table["skipped"].items():
        for entry in reasons:
            count = len(entry["cases"])
            out.write(
                f"  {MARKS[SKIPPED]} {name}: {count} case{'s' * (count != 1)} skipped: "
                f"{entry['reason']}\n"
            )


def print_known_failing(out: TextIO, outcomes: Sequence[Outcome]) -> None:
    """Why each known-failing run fails: the reasons of its known-failing entries."""
    reasons: dict[str, list[str]] = {}
    for outcome in outcomes:
        if outcome.outcome == KNOWN:
            reasons.setdefault(outcome.detail, []).append(outcome.run.id)
    if not reasons:
        return
    out.write(f"\n{MARKS[KNOWN]} known-failing runs and why:\n")
    for detail, runs in reasons.items():
        out.write(f"  {', '.join(runs)}\n    {detail}\n")


def print_skipped_cases(out: TextIO, outcomes: Sequence[Outcome]) -> None:
    """Each skipped case, once, with what it needs and why it cannot have it here."""
    skipped: dict[str, str] = {}
    for outcome in outcomes:
        if outcome.skip is not None:
            skipped.setdefault(outcome.run.case.name, outcome.skip.text)
    if not skipped:
        return
    out.write(f"\n{MARKS[SKIPPED]} {len(skipped)} skipped case{'s' * (len(skipped) != 1)}:\n")
    width = max(len(name) for name in skipped)
    for name, why in sorted(skipped.items()):
        out.write(f"  {name:<{width}}  {why}\n")


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
