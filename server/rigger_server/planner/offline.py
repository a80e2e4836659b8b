"""The offline planner: deterministic, no network, no model.

Its answers follow these rules, so that the same PRD and task always give
the same result (and conformance cases can expect it exactly).

Tasks from a PRD:
- When the PRD has explicit tasks (the top-level items of a `## Tasks`
  list, and checkbox items `- [ ]` anywhere; see prd.py), each becomes a
  task, in document order, as written: its title is the item's first
  paragraph without its metadata; `**Assignee:** name` (or `Owner:`) or
  `@name` sets the assignee; `Due: YYYY-MM-DD` the due date; `after #2`,
  `depends on #1 and #3`, `blocked by #4`, `depends on <title>` and
  `after "<title>"` its dependencies (#N is the N-th task). The reasoning
  says where in the PRD the task is written, then the item's further
  paragraphs and nested items (its steps). A checked box (`- [x]`) marks the
  task done.
- Otherwise each objective becomes a task; its reasoning gives its place
  among the objectives, its nested items, and the PRD's constraints and tech
  stack.
- Otherwise the PRD is refused (InvalidArgument naming prd_id).
- context_files: the paths the item names, then the paths the PRD names
  outside any item, at most 20. Complexity: the heuristic (complexity.py).
- Refused as InvalidArgument naming prd_id, with the task's number and line:
  a due date that is not a real YYYY-MM-DD date, a reference to no task or to
  two, a task depending on itself, a cycle.
- Titles longer than 200 characters are cut at a word, the whole text kept in
  the reasoning; reasoning is at most 4,000 characters.

Enhancement (type `acceptance_criteria`): the goal and where it comes from;
acceptance criteria drawn from the task's steps in the PRD, the PRD's
constraints, its tech stack, the task's context files and due date, and a
test that shows the change works; the tasks to finish first; open questions
(no assignee, no due date); what the PRD puts out of scope.

Comprehension test: a question about the first of these facts the task has:
the task it waits for (wrong answers: other tasks' titles); the PRD
constraint nearest the task (wrong answers: objectives, tech stack and
out-of-scope items); the first of its steps (wrong answers: its later
steps); the file it is about (wrong answers: other paths of the PRD); else
what it delivers. multiple_choice gives the answer among up to 3 wrong ones,
at a position fixed by the task's title (not its id, so that the same task
text always gets the same test); short_answer only the question and the
answer.

Decomposition (3 to 5 subtasks, in order): the task's steps in the PRD when
it has 3 to 5; more are grouped into 5 runs of consecutive steps; 1 or 2 are
completed with Plan / Verify phases; with no steps, the standard phases
Survey, Plan, Build, Verify. Subtasks inherit the assignee, due date and
context files; a subtask's complexity is its own score, but never more than
the parent's score minus one: a part is simpler than the whole.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import zlib
from collections.abc import Iterable, Sequence

from rigger_server.domain import Task
from rigger_server.errors import DeadlineExceeded, InvalidArgument, quoted
from rigger_server.limits import MAX_PLANNED_CONTEXT_FILES
from rigger_server.planner import complexity as heuristic
from rigger_server.planner.dependencies import DependencyError, resolve
from rigger_server.planner.plans import (
    OFFLINE,
    ComprehensionTest,
    Deadline,
    Decomposition,
    Enhancement,
    PlannedTask,
    Subtask,
    TaskContext,
    TaskPlan,
    check_test_type,
)
from rigger_server.prd import ParsedPrd, PrdItem, PrdTask

MAX_CONTEXT_FILES = MAX_PLANNED_CONTEXT_FILES
MAX_TITLE = 200
MAX_REASONING = 4000
# How many entries of a long list an enhancement shows before "and N more".
MAX_LISTED = 10
OUT_OF_SCOPE = frozenset({"out of scope", "non-goals", "non goals", "not in scope"})
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_WORD = re.compile(r"\w+")


class OfflinePlanner:
    """The built-in planner (see the module docstring for its rules)."""

    name = OFFLINE

    async def generate_tasks(
        self, prd: ParsedPrd, *, model: str = "", deadline: Deadline | None = None
    ) -> TaskPlan:
        """The tasks `prd` asks for; `model` is ignored: this planner has none."""
        _check(deadline)
        # Off the event loop: a 1 MiB PRD can hold tens of thousands of tasks.
        return await asyncio.to_thread(plan_tasks, prd)

    async def enhance(
        self, context: TaskContext, *, model: str = "", deadline: Deadline | None = None
    ) -> Enhancement:
        """Acceptance criteria and open questions for the task."""
        _check(deadline)
        return await asyncio.to_thread(enhancement_for, context)

    async def comprehension_test(
        self,
        context: TaskContext,
        enhancement: Enhancement | None,
        test_type: str,
        *,
        model: str = "",
        deadline: Deadline | None = None,
    ) -> ComprehensionTest:
        """A question about the task, of `test_type`."""
        test_type = check_test_type(test_type)
        _check(deadline)
        return await asyncio.to_thread(comprehension_test_for, context, test_type)

    async def decompose(
        self, context: TaskContext, *, model: str = "", deadline: Deadline | None = None
    ) -> Decomposition:
        """The task split into 3 to 5 simpler subtasks."""
        _check(deadline)
        return await asyncio.to_thread(decomposition_for, context)

    async def aclose(self) -> None:
        """Nothing to release."""


def _check(deadline: Deadline | None) -> None:
    if deadline is not None and deadline.remaining() <= 0:
        raise DeadlineExceeded("the deadline passed before planning started")


# --- tasks from a PRD -----------------------------------------------------------


def plan_tasks(prd: ParsedPrd) -> TaskPlan:
    """Plan the tasks of a PRD by the rules of the module docstring."""
    shared = _shared_paths(prd)
    if prd.tasks:
        tasks = _explicit_tasks(prd, shared)
    elif prd.objectives:
        tasks = _objective_tasks(prd, shared)
    else:
        raise InvalidArgument(
            "prd_id",
            f"the PRD {quoted(prd.title)} lists no tasks and no objectives to plan from: "
            "add a '## Tasks' list, checkbox items or a '## Objectives' list",
        )
    return TaskPlan(tasks=tuple(tasks), planner=OFFLINE, model=OFFLINE)


def _explicit_tasks(prd: ParsedPrd, shared: Sequence[str]) -> list[PlannedTask]:
    written = prd.tasks
    titles = [_short_title(task.title) for task in written]
    try:
        dependencies = resolve(
            titles, [task.after for task in written], [task.depends_on for task in written]
        )
    except DependencyError as exc:
        raise InvalidArgument("prd_id", f"in the PRD {quoted(prd.title)}: {exc}") from None
    planned = []
    for number, (task, title, needs) in enumerate(
        zip(written, titles, dependencies, strict=True), start=1
    ):
        due = _due_date(prd, number, task)
        origin = f"From the PRD {prd.title!r}"
        origin += f", section {task.section!r}" if task.section else ""
        origin += f", line {task.line}."
        parts = [origin]
        if title != task.title:
            parts.append(task.title)
        parts.extend(task.details)
        if task.steps:
            parts.append("Steps: " + "; ".join(task.steps) + ".")
        reasoning = _bounded_text(parts)
        planned.append(
            PlannedTask(
                title=title,
                reasoning=reasoning,
                complexity=heuristic.complexity(
                    title, assignee=task.assignee, due_date=due, reasoning=reasoning
                ),
                assignee=task.assignee,
                due_date=due,
                context_files=_context_files(task.paths, shared),
                dependencies=needs,
                done=task.done,
            )
        )
    return planned


def _objective_tasks(prd: ParsedPrd, shared: Sequence[str]) -> list[PlannedTask]:
    items = {item.text: item for item in prd.items_of("objectives")}
    constraints = _listing("Constraints", prd.constraints, "; ")
    stack = _listing("Tech stack", prd.tech_stack, ", ")
    planned = []
    for number, objective in enumerate(prd.objectives, start=1):
        item = items.get(objective)
        title = _short_title(objective)
        parts = [f"Objective {number} of {len(prd.objectives)} of the PRD {prd.title!r}."]
        if title != objective:
            parts.append(objective)
        if item is not None:
            parts.extend(item.details)
            if item.steps:
                parts.append("Steps: " + "; ".join(item.steps) + ".")
        parts.extend(part for part in (constraints, stack) if part)
        reasoning = _bounded_text(parts)
        planned.append(
            PlannedTask(
                title=title,
                reasoning=reasoning,
                complexity=heuristic.complexity(
                    title, assignee=None, due_date=None, reasoning=reasoning
                ),
                context_files=_context_files(item.paths if item else (), shared),
            )
        )
    return planned


def _due_date(prd: ParsedPrd, number: int, task: PrdTask) -> str | None:
    if task.due_date is None:
        return None
    try:
        if not _DATE.fullmatch(task.due_date):
            raise ValueError(task.due_date)
        dt.date.fromisoformat(task.due_date)
    except ValueError:
        raise InvalidArgument(
            "prd_id",
            f"in the PRD {quoted(prd.title)}: task #{number} {quoted(task.title)} (line "
            f"{task.line}) is due {quoted(task.due_date)}, which is not a date of the form "
            "YYYY-MM-DD",
        ) from None
    return task.due_date


def _shared_paths(prd: ParsedPrd) -> list[str]:
    """Paths the PRD names outside any item: context for every task."""
    in_items = {path for task in prd.tasks for path in task.paths}
    in_items.update(path for s in prd.sections for item in s.items for path in item.paths)
    return [path for path in prd.paths if path not in in_items]


def _context_files(own: Iterable[str], shared: Iterable[str]) -> tuple[str, ...]:
    files: dict[str, None] = {}
    for path in (*own, *shared):
        if len(files) == MAX_CONTEXT_FILES:
            break
        files[path] = None
    return tuple(files)


def _short_title(text: str) -> str:
    if len(text) <= MAX_TITLE:
        return text
    cut = text[: MAX_TITLE - 1].rsplit(" ", 1)[0] or text[: MAX_TITLE - 1]
    return cut.rstrip(" ,;:") + "\u2026"


def _listing(label: str, entries: Sequence[str], separator: str) -> str:
    if not entries:
        return ""
    shown = list(entries[:MAX_LISTED])
    if len(entries) > MAX_LISTED:
        shown.append(f"and {len(entries) - MAX_LISTED} more")
    return f"{label}: {separator.join(shown)}."


def _bounded_text(parts: list[str], limit: int = MAX_REASONING) -> str:
    text = " ".join(filter(None, parts))
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


# --- orchestration steps --------------------------------------------------------


def _key(text: str) -> str:
    return " ".join(text.lower().split()).strip(" .")


def find_item(prd: ParsedPrd | None, title: str) -> PrdTask | PrdItem | None:
    """The PRD task or item a task's title was planned from, if any."""
    if prd is None:
        return None
    key = _key(title)
    for task in prd.tasks:
        if key in (_key(task.title), _key(_short_title(task.title)), _key(task.text)):
            return task
    for section in prd.sections:
        for item in section.items:
            if key in (_key(item.text), _key(_short_title(item.text))):
                return item
    return None


def _dependency_titles(context: TaskContext) -> list[str]:
    by_id = {task.id: task for task in context.related}
    return [by_id[i].title for i in context.task.dependencies if i in by_id]


def _out_of_scope(prd: ParsedPrd | None) -> list[str]:
    if prd is None:
        return []
    return [
        item.text for s in prd.sections if s.heading.lower() in OUT_OF_SCOPE for item in s.items
    ]


def _bullets(entries: Sequence[str], box: bool = False) -> list[str]:
    mark = "- [ ] " if box else "- "
    lines = [mark + entry for entry in entries[:MAX_LISTED]]
    if len(entries) > MAX_LISTED:
        lines.append(f"- \u2026 and {len(entries) - MAX_LISTED} more")
    return lines


def enhancement_for(context: TaskContext) -> Enhancement:
    """Acceptance criteria, prerequisites and open questions (module docstring)."""
    task, prd = context.task, context.prd
    item = find_item(prd, task.title)
    lines = [f"Goal: {task.title}"]
    if prd is not None:
        where = f"From the PRD {prd.title!r}"
        if isinstance(item, PrdTask):
            where += f", line {item.line}"
        lines.append(where + ".")
    criteria: list[str] = []
    if item is not None:
        criteria.extend(item.steps)
    if prd is not None:
        criteria.extend(f"Respects the constraint: {c}" for c in prd.constraints)
        if prd.tech_stack:
            criteria.append("Built with the PRD's stack: " + ", ".join(prd.tech_stack[:MAX_LISTED]))
    if task.context_files:
        files = ", ".join(task.context_files[:MAX_LISTED])
        criteria.append(f"Changes to {files} are reviewed")
    if task.due_date:
        criteria.append(f"Finished by {task.due_date}")
    criteria.append(f"A test shows {task.title!r} works, and fails without the change")
    lines += ["", "Acceptance criteria:", *_bullets(criteria, box=True)]
    first = _dependency_titles(context)
    if first:
        lines += ["", "Finish first:", *_bullets(first)]
    questions = []
    if not task.assignee:
        questions.append("Who owns this task? It has no assignee.")
    if not task.due_date:
        questions.append("When is it due? It has no due date.")
    if questions:
        lines += ["", "Open questions:", *_bullets(questions)]
    excluded = _out_of_scope(prd)
    if excluded:
        lines += ["", "Out of scope:", *_bullets(excluded)]
    return Enhancement(
        enhancement_type="acceptance_criteria",
        content="\n".join(lines),
        planner=OFFLINE,
        model=OFFLINE,
    )


def _words(text: str) -> set[str]:
    return {word for word in _WORD.findall(text.lower()) if len(word) > 3}


def _nearest(candidates: Sequence[str], task: Task, prd: ParsedPrd) -> str:
    """The candidate sharing most words with the task; the first on a tie.

    The PRD's title is in every task's reasoning, so its words do not count.
    """
    words = _words(f"{task.title} {task.reasoning or ''}") - _words(prd.title)
    return max(candidates, key=lambda c: len(words & _words(c)))


def _facts(context: TaskContext) -> list[tuple[str, str, str, list[str]]]:
    """(multiple-choice question, short-answer question, answer, wrong answers), best first."""
    task, prd = context.task, context.prd
    title = task.title
    facts = []
    first = _dependency_titles(context)
    if first:
        others = [t.title for t in context.related if t.title not in first and t.id != task.id]
        facts.append(
            (
                f"Which task must be finished before {title!r} can start?",
                f"Name a task that must be finished before {title!r} can start.",
                first[0],
                others,
            )
        )
    if prd is not None and prd.constraints:
        constraint = _nearest(prd.constraints, task, prd)
        wrong = [*prd.objectives, *prd.tech_stack, *_out_of_scope(prd)]
        facts.append(
            (
                f"Which of these is a constraint of the PRD {prd.title!r} that {title!r} "
                "must respect?",
                f"Name the constraint of the PRD {prd.title!r} that matters most for {title!r}.",
                constraint,
                wrong,
            )
        )
    item = find_item(prd, title)
    if item is not None and item.steps:
        facts.append(
            (
                f"What is the first step of {title!r}?",
                f"What is the first step of {title!r}?",
                item.steps[0],
                list(item.steps[1:]),
            )
        )
    if task.context_files:
        others = [p for p in (prd.paths if prd else ()) if p not in task.context_files]
        facts.append(
            (
                f"Which file is {title!r} about?",
                f"Which file is {title!r} about?",
                task.context_files[0],
                others,
            )
        )
    siblings = [t.title for t in context.related if t.id != task.id]
    facts.append(
        (
            "Which of these is the task you are taking on?",
            f"In one sentence: what does {title!r} deliver, and how will you show it is done?",
            title,
            siblings,
        )
    )
    return facts


def _with_distractors(
    context: TaskContext, facts: list[tuple[str, str, str, list[str]]]
) -> tuple[str, str, list[str]]:
    """The first fact with at least one wrong answer to offer, and up to three of them."""
    for question, _, answer, wrong in facts:
        distractors = list(dict.fromkeys(w for w in wrong if _key(w) != _key(answer)))[:3]
        if distractors:
            return question, answer, distractors
    # A task alone, with nothing around it: ask what orchestration leads to.
    return (
        f"What status does {context.task.title!r} have once orchestrated?",
        "ORCHESTRATION_COMPLETE",
        ["DECOMPOSED", "TODO", "ARCHIVED"],
    )


def comprehension_test_for(context: TaskContext, test_type: str) -> ComprehensionTest:
    """A question about the first fact the task has (module docstring)."""
    facts = _facts(context)
    if test_type == "short_answer":
        _, question, answer, _ = facts[0]
        return ComprehensionTest(
            test_type=test_type,
            question=question,
            options=(),
            correct_answer=answer,
            planner=OFFLINE,
            model=OFFLINE,
        )
    question, answer, distractors = _with_distractors(context, facts)
    position = zlib.crc32(context.task.title.encode()) % (len(distractors) + 1)
    options = [*distractors[:position], answer, *distractors[position:]]
    return ComprehensionTest(
        test_type=test_type,
        question=question,
        options=tuple(options),
        correct_answer=answer,
        planner=OFFLINE,
        model=OFFLINE,
    )


PHASES = (
    ("Survey", "Read the code and documents it touches{files}; list what must keep working."),
    ("Plan", "Write down the target shape and the order of changes{constraints}."),
    ("Build", "Make the change in small, reviewable steps{files}."),
    ("Verify", "Show it works with tests of the acceptance criteria; nothing else changed."),
)
MAX_SUBTASK_TITLE = 80


def _object_of(title: str, room: int) -> str:
    """The task's title without the words that make it complex, in `room` characters."""
    words = [w for w in title.split() if not any(k in w.lower() for k in heuristic.KEYWORDS)]
    text = " ".join(words) or "the change"
    if len(text) <= room:
        return text
    cut = text[: room - 1].rsplit(" ", 1)[0] or text[: room - 1]
    return cut.rstrip(" ,;:") + "\u2026"


def _phase(name: str, template: str, context: TaskContext) -> tuple[str, str]:
    task, prd = context.task, context.prd
    files = task.context_files[:3]
    constraints = prd.constraints[:3] if prd else ()
    reasoning = template.format(
        files=f" ({', '.join(files)})" if files else "",
        constraints=f"; check it against: {'; '.join(constraints)}" if constraints else "",
    )
    title = f"{name}: {_object_of(task.title, MAX_SUBTASK_TITLE - len(name) - 2)}"
    return title, reasoning


def _short(text: str, room: int = MAX_SUBTASK_TITLE) -> str:
    if len(text) <= room:
        return text
    cut = text[: room - 1].rsplit(" ", 1)[0] or text[: room - 1]
    return cut.rstrip(" ,;:") + "\u2026"


def _parts(context: TaskContext) -> list[tuple[str, str]]:
    item = find_item(context.prd, context.task.title)
    steps = list(item.steps) if item is not None else []
    if not steps:
        return [_phase(name, template, context) for name, template in PHASES]
    if len(steps) > 5:
        size, extra = divmod(len(steps), 5)
        runs, start = [], 0
        for index in range(5):
            end = start + size + (1 if index < extra else 0)
            runs.append(steps[start:end])
            start = end
        return [
            (_short(f"{run[0]} (+{len(run) - 1} more)"), "; ".join(run) + ".")
            if len(run) > 1
            else (_short(run[0]), run[0])
            for run in runs
        ]
    parts = [(_short(step), step) for step in steps]
    if len(parts) == 1:
        parts.insert(0, _phase(*PHASES[1], context))
    if len(parts) < 3:
        parts.append(_phase(*PHASES[3], context))
    return parts


def decomposition_for(context: TaskContext) -> Decomposition:
    """3 to 5 subtasks, each scoring below the task (module docstring)."""
    task = context.task
    ceiling = max(1, heuristic.task_score(task).value - 1)
    parts = _parts(context)
    subtasks = []
    for number, (title, detail) in enumerate(parts, start=1):
        # The parent is linked by parent_task_id; its title need not be repeated.
        reasoning = f"Part {number} of {len(parts)}: {detail}"
        own = heuristic.complexity(
            title, assignee=task.assignee, due_date=task.due_date, reasoning=reasoning
        )
        subtasks.append(
            Subtask(
                title=title,
                reasoning=reasoning,
                complexity=min(own, ceiling),
                assignee=task.assignee,
                due_date=task.due_date,
                context_files=task.context_files,
            )
        )
    return Decomposition(subtasks=tuple(subtasks), planner=OFFLINE, model=OFFLINE)
