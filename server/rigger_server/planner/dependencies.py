"""Dependencies between planned tasks: references resolved, cycles refused.

Tasks are numbered from 1 in plan order; `#2` is the second. A reference by
title matches another task's title, case-insensitively. A reference to no
task, to several (two tasks with that title), to the task itself, or one
that closes a cycle is an error naming the tasks involved.
"""

from __future__ import annotations

from collections.abc import Sequence

from rigger_server.errors import quoted

# The most tasks of a cycle its message names; a longer one shows its start
# and how many more.
CYCLE_SHOWN = 8


class DependencyError(ValueError):
    """References that cannot stand; the message says which and why."""


def resolve(
    titles: Sequence[str],
    numbers: Sequence[Sequence[int]],
    named: Sequence[Sequence[str]],
) -> tuple[tuple[int, ...], ...]:
    """Each task's dependencies as 0-based indexes, from `#N` numbers and titles."""
    by_title: dict[str, list[int]] = {}
    for index, title in enumerate(titles):
        by_title.setdefault(_key(title), []).append(index)
    resolved = []
    for index, (own_numbers, own_titles) in enumerate(zip(numbers, named, strict=True)):
        found: list[int] = []
        for number in own_numbers:
            if not 1 <= number <= len(titles):
                raise DependencyError(
                    f"{_name(index, titles)} refers to #{number}, but the tasks are "
                    f"#1 to #{len(titles)}"
                )
            found.append(number - 1)
        for title in own_titles:
            matches = by_title.get(_key(title), [])
            if not matches:
                raise DependencyError(
                    f"{_name(index, titles)} depends on {quoted(title)}, which is not the title "
                    "of any task; refer to a task by its exact title or its number (#N)"
                )
            if len(matches) > 1:
                which = " and ".join(f"#{match + 1}" for match in matches)
                raise DependencyError(
                    f"{_name(index, titles)} depends on {quoted(title)}, the title of {which}; "
                    "refer to one by its number"
                )
            found.append(matches[0])
        resolved.append(tuple(dict.fromkeys(found)))
    check_acyclic(resolved, titles)
    return tuple(resolved)


def check_acyclic(dependencies: Sequence[Sequence[int]], titles: Sequence[str]) -> None:
    """Refuse indexes out of range and any cycle, naming the tasks on it."""
    count = len(dependencies)
    for index, targets in enumerate(dependencies):
        for target in targets:
            if not 0 <= target < count:
                raise DependencyError(
                    f"{_name(index, titles)} depends on task #{target + 1}, but the tasks "
                    f"are #1 to #{count}"
                )
            if target == index:
                raise DependencyError(f"{_name(index, titles)} depends on itself")
    # Iterative depth-first search: plans can hold tens of thousands of tasks.
    unseen, active, done = 0, 1, 2
    state = [unseen] * count
    for root in range(count):
        if state[root] != unseen:
            continue
        path = [root]
        cursors = [0]
        state[root] = active
        while path:
            node = path[-1]
            targets = dependencies[node]
            if cursors[-1] < len(targets):
                target = targets[cursors[-1]]
                cursors[-1] += 1
                if state[target] == active:
                    cycle = [*path[path.index(target) :], target]
                    raise DependencyError("the dependencies form a cycle: " + _cycle(cycle, titles))
                if state[target] == unseen:
                    state[target] = active
                    path.append(target)
                    cursors.append(0)
            else:
                state[node] = done
                path.pop()
                cursors.pop()


def _key(title: str) -> str:
    return " ".join(title.lower().split()).strip(" .")


def _name(index: int, titles: Sequence[str]) -> str:
    return f"task #{index + 1} {quoted(titles[index])}"


def _cycle(cycle: Sequence[int], titles: Sequence[str]) -> str:
    """The tasks of a cycle, first to first again; the middle of a long one left out."""
    names = [_name(i, titles) for i in cycle[: CYCLE_SHOWN - 1]]
    if len(cycle) > CYCLE_SHOWN:
        names.append(f"\u2026 {len(cycle) - CYCLE_SHOWN} more tasks \u2026")
    if len(cycle) >= CYCLE_SHOWN:
        names.append(_name(cycle[-1], titles))
    return " -> ".join(names)
