"""Known failures, per client: conformance/known_failing/<client>.yaml.

Each file holds `known_failing:`, a list of entries, each a case-name glob
and the reason (an issue link, what is broken). A run that fails and involves
a listed client is reported as known-failing instead of failed. An entry whose
runs all pass is stale and fails the suite, so the lists only ever shrink by
someone deleting the entry on purpose.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import pathlib
from collections.abc import Iterable, Sequence

import yaml

from conformance.suite.plan import Run

KNOWN_FAILING_DIR = pathlib.Path(__file__).parent.parent / "known_failing"


class KnownFailingError(ValueError):
    """A known-failing file does not follow its format."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One listed case pattern for one client."""

    language: str
    pattern: str
    reason: str

    def matches(self, run: Run) -> bool:
        """True when the run involves this client and its case matches the pattern."""
        return self.language in run.languages and fnmatch.fnmatchcase(run.case.name, self.pattern)


def load(languages: Iterable[str], directory: pathlib.Path = KNOWN_FAILING_DIR) -> list[Entry]:
    """The entries of every requested client; a missing file means none."""
    entries: list[Entry] = []
    for language in languages:
        path = directory / f"{language}.yaml"
        if not path.exists():
            continue
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        items = document.get("known_failing") if isinstance(document, dict) else None
        if not isinstance(items, list):
            raise KnownFailingError(f"{path.name}: expected `known_failing:` with a list")
        for index, item in enumerate(items):
            if not (
                isinstance(item, dict)
                and isinstance(item.get("case"), str)
                and isinstance(item.get("reason"), str)
                and item["reason"].strip()
                and set(item) == {"case", "reason"}
            ):
                raise KnownFailingError(
                    f"{path.name}[{index}]: each entry is {{case: <glob>, reason: <why>}}"
                )
            entries.append(Entry(language, item["case"], item["reason"].strip()))
    return entries


def listing(run: Run, entries: Sequence[Entry]) -> list[Entry]:
    """The entries that list this run."""
    return [entry for entry in entries if entry.matches(run)]


def stale(
    entries: Sequence[Entry], passed: dict[Run, bool], *, every_case_selected: bool
) -> dict[Entry, list[Run]]:
    """Entries that no longer describe a failure, with the runs they cover.

    An entry is stale when every run it lists passed. With the whole suite
    selected, an entry that lists no run at all is stale too (a typo, or a
    case that was renamed).
    """
    found: dict[Entry, list[Run]] = {}
    for entry in entries:
        runs = [run for run in passed if entry.matches(run)]
        if runs and all(passed[run] for run in runs):
            found[entry] = runs
        elif not runs and every_case_selected:
            found[entry] = []
    return found


def unmatched(entries: Sequence[Entry], case_names: Iterable[str]) -> list[Entry]:
    """Entries whose pattern matches no case (a typo, or a case that was renamed)."""
    names = list(case_names)
    return [e for e in entries if not any(fnmatch.fnmatchcase(n, e.pattern) for n in names)]
