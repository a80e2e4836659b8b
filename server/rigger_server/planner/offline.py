"""The offline planner: deterministic, no network, no model.

Its answers follow these rules, so that the same PRD and task always give
the same result (and conformance cases can expect it exactly).

Tasks from a PRD:
- When the PRD has explicit tasks (the top-level items of a `## Tasks`
  list, and checkbox items `- [ ]` anywhere; see prd.py), each becomes a
  task, in document order, as written: its title is the item's first
  paragraph without its metadata, as plain text (inline code, emphasis and
  links reduced to their text); `**Assignee:** name` (or `Owner:`) or
  `@name` sets the assignee, spelled as the PRD first spells that name
  (case ignored: "alice" after "Alice" is "Alice"); `Due: YYYY-MM-DD` the due date; `after #2`,
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

A task's topic is the words of its title and of its item's steps,
paragraphs and paths (the PRD's title, short and common words left out;
"posted" and "post" are one word). A constraint or a file bears on the task
when it shares a word with its topic; the files its item names always do.

Enhancement (type `acceptance_criteria`): the goal and where it comes from;
acceptance criteria drawn from the task's steps in the PRD, the constraints
and context files that bear on it, the PRD's tech stack, its due date, and
a test that shows the change works; the tasks to finish first; open questions
(no assignee, no due date); what the PRD puts out of scope.

Comprehension test: a question about the first of these facts the task has:
the task it waits for (wrong answers: other tasks' titles); the constraint
bearing most on the task (wrong answers: objectives, out-of-scope items and
tech stack); the first of its steps (wrong answers: its later steps); the
file it is about (wrong answers: other paths of the PRD); else what it
delivers. A wrong answer sharing a word with the answer is never offered (it
could be defended), nor one that nearly repeats another wrong answer.
multiple_choice gives the answer among up to 3 wrong ones,
at a position fixed by the task's title (not its id, so that the same task
text always gets the same test); short_answer only the question and the
answer.

Decomposition (3 to 5 subtasks, in order): the task's steps in the PRD when
it has 3 to 5; more are grouped into 5 runs of consecutive steps; 1 or 2 are
completed with Plan / Verify phases; with no steps, the standard phases
"Survey how to <task>", "Plan how to <task>", "Carry out: <task>",
"Verify: <task>", the task's title kept, verb and all. Subtasks inherit the
assignee, due date and context files; a subtask's reasoning stays within 200
characters, so by the heuristic (which does not count a subtask's keyword)
it scores below 7 and orchestrating it never decomposes it again; its
complexity is its own score, but never more than the parent's score minus
one: a part is simpler than the whole.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import zlib
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet

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
from rigger_server.prd import ParsedPrd, PrdItem, PrdTask, plain_text

MAX_CONTEXT_FILES = MAX_PLANNED_CONTEXT_FILES
MAX_TITLE = 200
MAX_REASONING = 4000
# How many entries of a long list an enhancement shows before "and N more".
MAX_LISTED = 10
OUT_OF_SCOPE = frozenset({"out of scope", "non-goals", "non goals", "not in scope"})
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Words, for telling what bears on a task: runs of letters and digits, so a
# path's parts (`rigger_client/watch.py`) are words too.
_WORD = re.compile(r"[a-z0-9]+")
# Words too common to say what a text is about.
_COMMON = """
    about after also been before being both does done each even every from have into just
    more most must only other over same should some such than that their them then there
    these they this those under until very when where which while will with within without
    would your
    add all and any are but can due fix for get has how its let may new nor not now off one
    our out own per put see set the too two use via was who why yet you
    """
_STOPWORDS = frozenset(_COMMON.split())
# Option texts sharing at least this share of their words are near-duplicates.
NEAR_DUPLICATE = 0.5


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
    plain = [plain_text(task.title) for task in written]
    titles = [_short_title(text) for text in plain]
    try:
        dependencies = resolve(
            titles,
            [task.after for task in written],
            [tuple(plain_text(t) for t in task.depends_on) for task in written],
        )
    except DependencyError as exc:
        raise InvalidArgument("prd_id", f"in the PRD {quoted(prd.title)}: {exc}") from None
    spelling = _first_spellings(task.assignee for task in written)
    planned = []
    for number, (task, text, title, needs) in enumerate(
        zip(written, plain, titles, dependencies, strict=True), start=1
    ):
        due = _due_date(prd, number, task)
        assignee = spelling[task.assignee.casefold()] if task.assignee else None
        origin = f"From the PRD {prd.title!r}"
        origin += f", section {task.section!r}" if task.section else ""
        origin += f", line {task.line}."
        parts = [origin]
        if title != text:
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
                    title, assignee=assignee, due_date=due, reasoning=reasoning
                ),
                assignee=assignee,
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
        text = plain_text(objective)
        title = _short_title(text)
        parts = [f"Objective {number} of {len(prd.objectives)} of the PRD {prd.title!r}."]
        if title != text:
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


def _first_spellings(names: Iterable[str | None]) -> dict[str, str]:
    """Each name, case ignored, as the PRD first spells it: "alice" is "Alice" written later."""
    spelling: dict[str, str] = {}
    for name in names:
        if name:
            spelling.setdefault(name.casefold(), name)
    return spelling


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
    return " ".join(plain_text(text).lower().split()).strip(" .")


def find_item(prd: ParsedPrd | None, title: str) -> PrdTask | PrdItem | None:
    """The PRD task or item a task's title was planned from, if any."""
    if prd is None:
        return None
    key = _key(title)
    for task in prd.tasks:
        plain = plain_text(task.title)
        if key in (_key(plain), _key(_short_title(plain)), _key(task.text)):
            return task
    for section in prd.sections:
        for item in section.items:
            plain = plain_text(item.text)
            if key in (_key(plain), _key(_short_title(plain))):
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


def _stem(word: str) -> str:
    """A word without its common endings, so "posted", "posts" and "post" are one word."""
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4 and not word.endswith("ss"):
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 4 else word


def _words(text: str) -> set[str]:
    """The words that say what `text` is about, stemmed; short and common words left out.

    Three letters are enough for a word ("PCI", "log", "SQL").
    """
    return {
        _stem(word)
        for word in _WORD.findall(text.lower())
        if len(word) > 2 and word not in _STOPWORDS
    }


def _topic(task: Task, item: PrdTask | PrdItem | None, prd: ParsedPrd | None) -> set[str]:
    """What the task is about: its title and its item's steps and paragraphs.

    Not its reasoning, which quotes the PRD's constraints for every task
    planned from an objective; and not the PRD's title, which every task shares.
    """
    parts = [task.title]
    if item is not None:
        parts += [*item.steps, *item.details, *item.paths]
    elif task.reasoning:
        parts.append(task.reasoning)
    return _words(" ".join(parts)) - (_words(prd.title) if prd else set())


def bearing(candidates: Sequence[str], topic: set[str]) -> list[str]:
    """The candidates (constraints, paths) sharing a word with a task's topic, in order."""
    return [c for c in candidates if _words(c) & topic]


def enhancement_for(context: TaskContext) -> Enhancement:
    """Acceptance criteria, prerequisites and open questions (module docstring)."""
    task, prd = context.task, context.prd
    item = find_item(prd, task.title)
    topic = _topic(task, item, prd)
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
        criteria.extend(f"Respects the constraint: {c}" for c in bearing(prd.constraints, topic))
        if prd.tech_stack:
            criteria.append("Built with the PRD's stack: " + ", ".join(prd.tech_stack[:MAX_LISTED]))
    # The files its item names, and of the PRD's other files those sharing its words.
    own = set(item.paths) if item is not None else set()
    files = [f for f in task.context_files if f in own or _words(f) & topic]
    if files:
        criteria.append(f"Changes to {', '.join(files[:MAX_LISTED])} are reviewed")
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


def _nearest(candidates: Sequence[str], topic: set[str]) -> str:
    """The candidate sharing most words with the task's topic; the first on a tie."""
    return max(candidates, key=lambda c: len(topic & _words(c)))


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
    item = find_item(prd, title)
    topic = _topic(task, item, prd)
    relevant = bearing(prd.constraints, topic) if prd is not None else []
    if prd is not None and relevant:
        constraint = _nearest(relevant, topic)
        wrong = [*prd.objectives, *_out_of_scope(prd), *prd.tech_stack]
        facts.append(
            (
                f"Which of these is a constraint of the PRD {prd.title!r} that {title!r} "
                "must respect?",
                f"Name the constraint of the PRD {prd.title!r} that matters most for {title!r}.",
                constraint,
                wrong,
            )
        )
    if item is not None and item.steps:
        facts.append(
            (
                f"What is the first step of {title!r}?",
                f"What is the first step of {title!r}?",
                item.steps[0],
                list(item.steps[1:]),
            )
        )
    own = set(item.paths) if item is not None else set()
    about = [f for f in task.context_files if f in own or _words(f) & topic]
    if about:
        others = [p for p in (prd.paths if prd else ()) if p not in task.context_files]
        facts.append(
            (
                f"Which file is {title!r} about?",
                f"Which file is {title!r} about?",
                about[0],
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


def near_duplicates(first: str, second: str, ignored: AbstractSet[str] = frozenset()) -> bool:
    """Two option texts that say nearly the same: most of their words are shared."""
    a, b = _words(first) - ignored, _words(second) - ignored
    if not a or not b:
        return _key(first) == _key(second)
    return len(a & b) / len(a | b) >= NEAR_DUPLICATE or a <= b or b <= a


def _distractors(answer: str, wrong: Sequence[str], ignored: AbstractSet[str]) -> list[str]:
    """Up to three wrong answers that differ from the answer by meaning, and from each other.

    A wrong answer sharing any word with the answer (the PRD's title aside)
    is one a reader could defend ("across sidecar restarts" for "resumes
    after a restart"), so it is not offered.
    """
    meaning = _words(answer) - ignored
    chosen: list[str] = []
    for option in dict.fromkeys(wrong):
        if _key(option) == _key(answer) or (_words(option) - ignored) & meaning:
            continue
        if any(near_duplicates(option, other, ignored) for other in chosen):
            continue
        chosen.append(option)
        if len(chosen) == 3:
            break
    return chosen


def _with_distractors(
    context: TaskContext, facts: list[tuple[str, str, str, list[str]]]
) -> tuple[str, str, list[str]]:
    """The first fact with at least one wrong answer to offer, and up to three of them."""
    ignored = _words(context.prd.title) if context.prd is not None else set()
    for question, _, answer, wrong in facts:
        distractors = _distractors(answer, wrong, ignored)
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


# The standard phases: each title keeps the task's own words, verb included
# ("Survey how to refactor ..."), and each reasoning names what bears on it.
PHASES = (
    (
        "Survey how to {task}",
        "Read the code and documents it touches{files}; list what must keep working.",
    ),
    ("Plan how to {task}", "Write down the target shape and the order of changes{constraints}."),
    ("Carry out: {task}", "Make the change in small, reviewable steps{files}."),
    (
        "Verify: {task}",
        "Show it works with tests of the acceptance criteria; nothing else changed.",
    ),
)
MAX_SUBTASK_TITLE = 80


def _lower_first(title: str) -> str:
    """ "Refactor the store" as it reads inside a sentence; "API docs" stays as it is."""
    if len(title) > 1 and title[0].isupper() and title[1].islower():
        return title[0].lower() + title[1:]
    return title


def _phase(title: str, template: str, context: TaskContext) -> tuple[str, str]:
    task, prd = context.task, context.prd
    topic = _topic(task, find_item(prd, task.title), prd)
    files = [f for f in task.context_files if _words(f) & topic][:3]
    constraints = bearing(prd.constraints, topic)[:3] if prd else []
    reasoning = template.format(
        files=f" ({', '.join(files)})" if files else "",
        constraints=f"; check it against: {'; '.join(constraints)}" if constraints else "",
    )
    return _short(title.format(task=_lower_first(task.title))), reasoning


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
    """3 to 5 subtasks, each scoring below the task and below decomposition (module docstring)."""
    task = context.task
    ceiling = max(1, heuristic.task_score(task).value - 1)
    parts = _parts(context)
    subtasks = []
    for number, (title, detail) in enumerate(parts, start=1):
        # The parent is linked by parent_task_id; its title need not be repeated.
        # Kept within the heuristic's long-reasoning bound, so that a subtask
        # scores below DECOMPOSE_AT and orchestrating it never splits it again.
        reasoning = _short(f"Part {number} of {len(parts)}: {detail}", heuristic.LONG_REASONING)
        own = heuristic.complexity(
            title,
            assignee=task.assignee,
            due_date=task.due_date,
            reasoning=reasoning,
            subtask=True,
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
