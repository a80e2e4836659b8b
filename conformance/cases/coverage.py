"""Coverage, enforced from the schema: every method, every client, every documented code.

The method list comes from the RiggerService descriptor, not from a list kept
by hand, so a method added to the proto fails the suite until cases exist for
it. Documented status codes live in conformance/documented_codes.yaml.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterator, Mapping, Sequence

import yaml
from google.protobuf.descriptor import ServiceDescriptor

from conformance import cases as c
from conformance.suite.known_failing import Entry, listing
from conformance.suite.plan import Run

DOCUMENTED_CODES = pathlib.Path(__file__).parent.parent / "documented_codes.yaml"


def load_documented(path: pathlib.Path = DOCUMENTED_CODES) -> dict[str, dict[str, str]]:
    """method → {code name → where it is documented}."""
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(document, Mapping):
        raise ValueError(f"{path.name}: expected a mapping of methods to codes")
    return {
        str(m): {str(k): str(v) for k, v in (codes or {}).items()} for m, codes in document.items()
    }


def _stream_methods(case: c.Case) -> dict[str, str]:
    return {s.stream: s.method for s in case.walk() if isinstance(s, c.Open)}


def expected_codes(case: c.Case) -> Iterator[tuple[str, str, c.Step]]:
    """(method, code, step) for every status a case expects, streams included.

    Events received on a stream count as that stream method's OK.
    """
    streams = _stream_methods(case)
    for step in case.walk():
        if isinstance(step, c.Call):
            yield step.method, step.expect.code, step
        elif isinstance(step, c.Cancel):
            yield streams[step.stream], step.code, step
        elif isinstance(step, c.ExpectEnd):
            yield streams[step.stream], step.expect.code, step
        elif isinstance(step, c.ExpectEvents):
            yield streams[step.stream], "OK", step


def methods_by_role(case: c.Case) -> dict[str, set[str]]:
    """role → the methods it calls or opens in the case."""
    used: dict[str, set[str]] = {role: set() for role in case.roles}
    for step in case.walk():
        if isinstance(step, c.Call | c.Open):
            used[step.client].add(step.method)
    return used


def check(
    service: ServiceDescriptor,
    all_cases: Sequence[c.Case],
    runs: Sequence[Run],
    languages: Sequence[str],
    documented: Mapping[str, Mapping[str, str]],
    known: Sequence[Entry] = (),
) -> list[str]:
    """Every coverage problem; empty means the suite covers the schema.

    `runs` are the planned runs of `all_cases` over `languages`; runs the
    known-failing lists cover do not count as coverage for that client.
    """
    problems: list[str] = []
    methods = [m.name for m in service.methods]
    for name in methods:
        if name not in documented:
            problems.append(
                f"{service.name}.{name} has no entry in {DOCUMENTED_CODES.name}: "
                "document the status codes it returns, then write cases for them"
            )
    for name in documented:
        if name not in methods:
            problems.append(f"{DOCUMENTED_CODES.name} documents {name}, which the service lacks")
    for name, codes in documented.items():
        for code in codes:
            if code not in c.CODES:
                problems.append(f"{DOCUMENTED_CODES.name}: {name}: {code} is not a status code")

    exercised: set[tuple[str, str]] = set()
    for run in runs:
        used = methods_by_role(run.case)
        excluded = {e.language for e in listing(run, known)}
        for _, role, language in run.instances():
            if language not in excluded:
                exercised |= {(language, method) for method in used[role]}
    for name in methods:
        missing = [lang for lang in languages if (lang, name) not in exercised]
        if missing:
            problems.append(
                f"{service.name}.{name} has no case for client(s) {', '.join(missing)} "
                "(none calls it, or every one is known-failing)"
            )

    expected: dict[tuple[str, str], list[str]] = {}
    for case in all_cases:
        for method, code, _step in expected_codes(case):
            expected.setdefault((method, code), []).append(case.name)
    for name, codes in documented.items():
        for code in codes:
            if (name, code) not in expected:
                problems.append(
                    f"{name} is documented to return {code} ({codes[code]}) but no case expects it"
                )
    for (name, code), case_names in sorted(expected.items()):
        if code not in documented.get(name, {}):
            problems.append(
                f"case(s) {', '.join(sorted(set(case_names)))} expect {name} to return {code}, "
                f"which {DOCUMENTED_CODES.name} does not document for {name}"
            )
    return problems


@dataclasses.dataclass(frozen=True)
class Covered:
    """What some cases exercise: methods called or opened, (method, code) pairs expected."""

    methods: frozenset[str]
    codes: frozenset[tuple[str, str]]


def covered(cases: Sequence[c.Case]) -> Covered:
    """The methods and (method, code) pairs these cases exercise, whatever the languages."""
    return Covered(
        methods=frozenset(
            m for case in cases for used in methods_by_role(case).values() for m in used
        ),
        codes=frozenset((m, code) for case in cases for m, code, _ in expected_codes(case)),
    )


def describe(case: c.Case, others: Covered) -> list[str]:
    """What a case adds to the coverage of the others, for `--check -k`."""
    mine = covered([case])
    codes = sorted(mine.codes)
    lines = [
        f"calls or opens: {', '.join(sorted(mine.methods)) or 'nothing'}",
        f"expects: {', '.join(f'{m} {code}' for m, code in codes) or 'nothing'}",
    ]
    only = sorted(mine.methods - others.methods) + [
        f"{m} {code}" for m, code in codes if (m, code) not in others.codes
    ]
    if only:
        lines.append(f"only this case covers: {', '.join(only)}")
    else:
        lines.append("every method and code it covers is covered by another case too")
    return lines
