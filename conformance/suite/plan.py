"""Which runs a case expands into: every language alone and every cross-language mix.

A case's clients are roles. With `matrix: full` (the default) each role is
played by each selected language in turn, so a case with a writer and a
subscriber runs the whole writer x subscriber matrix. With `matrix: alone`
every role is played by the same language. A `fanout` role is not varied: in
every run it is played by all selected languages at once (one client each), so
one write reaches subscribers in every language side by side.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
from collections.abc import Sequence

from conformance.cases import Case


@dataclasses.dataclass(frozen=True)
class Run:
    """One case with a language for every role."""

    case: Case
    assignment: tuple[tuple[str, str], ...]  # (role, language) for each non-fanout role
    fanout_languages: tuple[str, ...]

    @property
    def languages(self) -> tuple[str, ...]:
        """Every language that takes part, sorted."""
        used = {language for _, language in self.assignment}
        if self.case.fanout:
            used |= set(self.fanout_languages)
        return tuple(sorted(used))

    @property
    def alone(self) -> bool:
        """True when one language plays every role."""
        return len(self.languages) == 1

    @property
    def id(self) -> str:
        """`case[python]` alone, `case[writer=go,watcher=python]` for a mix."""
        if self.alone:
            return f"{self.case.name}[{self.languages[0]}]"
        parts = [f"{role}={language}" for role, language in self.assignment]
        parts += [f"{role}=*" for role in self.case.roles if role in self.case.fanout]
        return f"{self.case.name}[{','.join(parts)}]"

    def instances(self) -> list[tuple[str, str, str]]:
        """(instance, role, language) for every client of the run.

        A fanout role has one instance per language, named `role@language`.
        """
        chosen = dict(self.assignment)
        found = []
        for role in self.case.roles:
            if role in self.case.fanout:
                found += [(f"{role}@{lang}", role, lang) for lang in self.fanout_languages]
            else:
                found.append((role, role, chosen[role]))
        return found


def plan(cases: Sequence[Case], languages: Sequence[str]) -> list[Run]:
    """Every run of the cases over the languages: each alone first, then the mixes."""
    languages = tuple(sorted(languages))
    runs: list[Run] = []
    for case in cases:
        varied = [role for role in case.roles if role not in case.fanout]
        if case.matrix == "alone" or not varied:
            combos = [tuple(lang for _ in varied) for lang in languages]
        else:
            combos = list(itertools.product(languages, repeat=len(varied)))
        case_runs = [
            Run(case, tuple(zip(varied, combo, strict=True)), languages) for combo in combos
        ]
        runs += sorted(case_runs, key=lambda r: (not r.alone, r.id))
    return runs


def select(cases: Sequence[Case], patterns: Sequence[str]) -> list[Case]:
    """The cases whose name contains any pattern, or matches it as a glob."""
    if not patterns:
        return list(cases)

    def wanted(name: str) -> bool:
        return any(p in name or fnmatch.fnmatchcase(name, p) for p in patterns)

    return [case for case in cases if wanted(case.name)]
