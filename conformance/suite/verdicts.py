"""The cross-language verdicts on a suite's runs.

After every run has judged itself (suite/execute.py ran them), runs of the
same case are compared with each other (their normalised transcripts must be
identical, whatever the languages), and the known-failing lists turn the raw
pass/fail into outcomes.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Sequence

from conformance.runner.case_run import RunResult
from conformance.runner.transcript import render
from conformance.suite import known_failing
from conformance.suite.plan import Run
from conformance.targets.capabilities import Skip

PASSED, FAILED, KNOWN, SKIPPED = "passed", "failed", "known-failing", "skipped"
DIFF_CONTEXT = 70


@dataclasses.dataclass
class Outcome:
    """The verdict on one run."""

    result: RunResult
    outcome: str
    detail: str
    skip: Skip | None = None  # SKIPPED: what the target lacks
    # KNOWN: the known-failing entries that list the run (their reasons).
    entries: tuple[known_failing.Entry, ...] = ()

    @property
    def run(self) -> Run:
        """The run judged."""
        return self.result.run


def _context(line: str) -> str:
    try:
        entry = json.loads(line)
    except ValueError:
        return "?"
    return f"{entry.get('at', '?')} [{entry.get('client', '?')}, {entry.get('kind', '?')}]"


def _excerpt(line: str, at: int) -> str:
    start = max(0, at - DIFF_CONTEXT)
    end = at + DIFF_CONTEXT
    return ("…" if start else "") + line[start:end] + ("…" if end < len(line) else "")


def describe_difference(reference: list[str], other: list[str], limit: int = 5) -> list[str]:
    """Where two rendered transcripts differ, shown around the first differing character."""
    lines: list[str] = []
    matcher = difflib.SequenceMatcher(a=reference, b=other, autojunk=False)
    for tag, a1, a2, b1, b2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        pairs = list(zip(reference[a1:a2], other[b1:b2], strict=False))
        for want, got in pairs:
            at = next((i for i, (x, y) in enumerate(zip(want, got, strict=False)) if x != y), 0)
            lines += [
                f"at {_context(want)}:",
                f"  expected {_excerpt(want, at)}",
                f"  got      {_excerpt(got, at)}",
            ]
        for extra in reference[a1 + len(pairs) : a2]:
            lines += [f"missing {_context(extra)}: {_excerpt(extra, 0)}"]
        for extra in other[b1 + len(pairs) : b2]:
            lines += [f"extra {_context(extra)}: {_excerpt(extra, 0)}"]
        if len(lines) >= limit * 3:
            lines.append("…")
            break
    return lines


def disagreements(results: Sequence[RunResult]) -> dict[Run, str]:
    """Runs of one case whose transcripts differ from the others', with the difference.

    Only runs that passed on their own are compared. The transcript most runs
    share is the reference (ties go to the earliest run in plan order, where
    each language alone comes first); every other run disagrees with it.
    """
    by_case: dict[str, list[RunResult]] = {}
    for result in results:
        if result.passed:
            by_case.setdefault(result.run.case.name, []).append(result)
    found: dict[Run, str] = {}
    for group in by_case.values():
        rendered = {id(r): render(r.transcript) for r in group}
        kinds: dict[tuple[str, ...], list[RunResult]] = {}
        for result in group:
            kinds.setdefault(tuple(rendered[id(result)]), []).append(result)
        if len(kinds) < 2:
            continue
        reference = max(kinds.values(), key=len)[0]
        for result in group:
            lines = rendered[id(result)]
            if lines == rendered[id(reference)]:
                continue
            found[result.run] = "\n".join(
                [
                    f"the clients disagree: what this run saw differs from {reference.run.id}",
                    *describe_difference(rendered[id(reference)], lines),
                ]
            )
    return found


def verdicts(
    results: Sequence[RunResult],
    entries: Sequence[known_failing.Entry],
    *,
    every_case_selected: bool,
    skipped: dict[Run, Skip] | None = None,
) -> tuple[list[Outcome], list[str]]:
    """Outcomes for every run, and suite-level errors (stale known-failing entries).

    `skipped` runs (the target lacks what they need) get a SKIPPED outcome with
    the reason; a known-failing entry that lists only skipped runs is not stale.
    """
    skipped = skipped or {}
    disagreeing = disagreements(results)
    for result in results:
        if result.run in disagreeing:
            result.problems.append(disagreeing[result.run])
    passed = {r.run: r.passed for r in results}
    stale = known_failing.stale(entries, passed, every_case_selected=every_case_selected)
    stale = {e: runs for e, runs in stale.items() if runs or not any(e.matches(r) for r in skipped)}
    errors = [
        f"known_failing/{e.language}.yaml lists {e.pattern!r}, which matches no case"
        for e, runs in stale.items()
        if not runs
    ]
    outcomes: list[Outcome] = []
    for result in results:
        listed = known_failing.listing(result.run, entries)
        stale_here = [e for e in listed if e in stale]
        if stale_here:
            entry = stale_here[0]
            detail = (
                f"listed in known_failing/{entry.language}.yaml ({entry.reason}) but passed: "
                "delete the entry"
            )
            outcomes.append(Outcome(result, FAILED, detail))
        elif result.passed:
            outcomes.append(Outcome(result, PASSED, ""))
        elif listed:
            reasons = "; ".join(f"{e.language}: {e.reason}" for e in listed)
            outcomes.append(
                Outcome(result, KNOWN, f"known failing ({reasons})", entries=tuple(listed))
            )
        else:
            outcomes.append(Outcome(result, FAILED, "\n".join(result.problems)))
    for run, skip in skipped.items():
        outcomes.append(Outcome(RunResult(run, [], [], 0.0), SKIPPED, skip.text, skip))
    return outcomes, errors
