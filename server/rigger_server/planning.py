"""Planning operations: GenerateTasksFromPRD and OrchestrateTask, over a TaskBook and a Planner.

Both follow one shape. They read what they need, let the planner work with no
write lock held (a model may think for minutes), then commit the whole result
in one write on the book's writer thread, or nothing:

- Generation commits every task of the plan in one transaction, after
  checking again, inside it, that the PRD has no tasks yet; or, when the
  caller asked to replace or synchronise them, matching the plan's items to
  the PRD's tasks read inside that transaction (regeneration.py) and
  writing every archive, creation and update it decides. A PRD named by its
  path is stored in that same transaction.
- Orchestration commits only if the task is still at the version it read
  (VersionConflict otherwise), so of two orchestrations of one task only one
  can win. The task moves through the PENDING_* states of its route, each
  move a STATUS_CHANGED event at its own version, in that one commit.

Each commit carries its caller's `WriteGuard` (guard.py): a write that would
land after the caller's deadline, or after its token was revoked, is refused
inside the transaction right before COMMIT, so a caller told
DEADLINE_EXCEEDED or UNAUTHENTICATED finds nothing written.

Whatever the planner, its result is held to the request limits before it is
committed (planner/bounds.py: prose and titles clipped, other values over
their limit refused), and a decomposition to the parent's subtask limit,
counted inside the commit's transaction: concurrent orchestrations and
AddTask calls cannot take a parent past `--max-subtasks` together.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable, Sequence

from rigger_server import prd as prd_files
from rigger_server.domain import (
    ComprehensionTestRecord,
    EnhancementRecord,
    Event,
    EventDraft,
    EventType,
    Prd,
    Task,
    TaskStatus,
    now_rfc3339,
)
from rigger_server.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    RiggerError,
    VersionConflict,
    quoted,
)
from rigger_server.guard import UNGUARDED, WriteGuard
from rigger_server.planner import Orchestration, Planner, TaskContext, TaskPlan, route
from rigger_server.planner import check_test_type as planner_test_type
from rigger_server.planner import orchestrate as plan_orchestration
from rigger_server.planner.bounds import OverLimit, bounded_orchestration, bounded_plan
from rigger_server.prd import ParsedPrd
from rigger_server.regeneration import (
    GenerationMode,
    Outcome,
    Reconciled,
    Result,
    plan_identities,
    reconcile,
)
from rigger_server.regeneration import new_task as planned_task
from rigger_server.tasks import TaskBook
from rigger_server.writer import Written

# regeneration.reconcile's shape: (prd_id, plan, the PRD's tasks, mode, now) -> what to write.
Reconcile = Callable[[str, TaskPlan, Sequence[Task], GenerationMode, str], Reconciled]

PASS = "pass"
# The fewest subtasks a decomposition makes (Planner.decompose: 3 to 5).
MIN_SUBTASKS = 3
# Parsed PRDs kept for orchestrating their tasks: parsing 1 MiB takes a while.
PARSED_CACHE = 4
# Suffixes that make a prd_id a path, as clients of the first release send it.
PRD_SUFFIXES = (".md", ".markdown")


@dataclasses.dataclass(frozen=True, slots=True)
class Generated:
    """What GenerateTasksFromPRD created."""

    prd_id: str
    # The tasks created, in the PRD's order.
    tasks: tuple[Task, ...]
    # Top-level tasks archived by a REPLACE or SYNC generation.
    archived_task_ids: tuple[str, ...]
    planner: str
    model: str
    # Every task of the PRD the call created, updated, kept, archived or left
    # alone (regeneration.py), the PRD's items first.
    results: tuple[Result, ...] = ()
    # The answer as its caller receives it, made inside the transaction by
    # the encoder Planning was given (empty without one): see `_answered`.
    answer: bytes = b""


@dataclasses.dataclass(frozen=True, slots=True)
class Orchestrated:
    """What OrchestrateTask did, and the task after it."""

    task: Task
    # "enhance", "decompose", or "pass" when the orchestration had finished before.
    routing_decision: str
    enhancement: EnhancementRecord | None
    test: ComprehensionTestRecord | None
    subtasks: tuple[Task, ...]
    # Who ran the flow's steps; empty for "pass" (nothing ran).
    planner: str
    model: str
    score: int
    reasons: tuple[str, ...]


def _naming_prd_id(exc: RiggerError) -> RiggerError:
    """A ParsePRD error about the file, re-worded for the prd_id field that named it."""
    text = str(exc).removeprefix("prd_file_path:").strip()
    if isinstance(exc, InvalidArgument):
        return InvalidArgument("prd_id", text)
    return type(exc)(f"prd_id: {text}")


def _new_tasks(prd: Prd, plan: TaskPlan) -> tuple[list[Task], list[EventDraft]]:
    """The plan's tasks as new rows of the PRD, and their CREATED events."""
    now = now_rfc3339()
    ids = [str(uuid.uuid4()) for _ in plan.tasks]
    tasks = [
        planned_task(
            prd.id, plan, index, identity, ids[index], [ids[j] for j in planned.dependencies], now
        )
        for index, (identity, planned) in enumerate(
            zip(plan_identities(plan), plan.tasks, strict=True)
        )
    ]
    drafts = [
        EventDraft.new(
            EventType.CREATED, task, now, planner=plan.planner, model=plan.model, prd_id=prd.id
        )
        for task in tasks
    ]
    return tasks, drafts


def _top_level_live(tasks: list[Task]) -> list[Task]:
    """The tasks a generation made (or could have): not subtasks, not archived."""
    return [t for t in tasks if t.parent_task_id is None and t.status is not TaskStatus.ARCHIVED]


class Planning:
    """GenerateTasksFromPRD and OrchestrateTask: plan outside the writer, commit whole."""

    def __init__(
        self,
        book: TaskBook,
        planner: Planner,
        matching: Reconcile = reconcile,
        encode_generated: Callable[[Generated], bytes] | None = None,
    ) -> None:
        self.book = book
        self.store = book.store
        self.planner = planner
        # How a regeneration matches the PRD's tasks to the plan (a test seam: seams.py).
        self.matching = matching
        # The server's wire encoding of a generation's answer (planning knows no wire format).
        self._encode_generated = encode_generated
        self._parsed: dict[str, ParsedPrd] = {}

    # --- validation -----------------------------------------------------------

    @staticmethod
    def _require(value: str, field: str) -> None:
        # Lengths are request_limits.check_request's, checked before any call reaches here.
        if not value.strip():
            raise InvalidArgument(field, "is required")

    # --- PRDs -----------------------------------------------------------------

    async def parse_prd(self, requested_path: str, guard: WriteGuard = UNGUARDED) -> Prd:
        """ParsePRD: store the PRD (if `guard` holds), and keep its parse for a generation.

        Without it, GenerateTasksFromPRD would parse the stored markdown again:
        half a second or more for a 1 MiB PRD.
        """
        prd, parsed = await self.book.parse_prd(requested_path, guard)
        self._remember(prd.id, parsed)
        return prd

    async def _prd(self, reference: str) -> tuple[Prd, ParsedPrd, bool]:
        """The PRD a prd_id names, parsed, and whether it is stored already."""
        stored = await self.book.read(self.store.get_prd, reference)
        if stored is not None:
            return stored, await self.parsed(stored), True
        if not reference.strip().lower().endswith(PRD_SUFFIXES):
            raise NotFound(
                f"prd_id: no PRD {quoted(reference)}; pass a prd_id from ParsePRD, or the path "
                "of a .md file inside the project root"
            )
        try:
            prd, parsed = await self.book.read_prd(reference)
        except (InvalidArgument, NotFound, PermissionDenied) as exc:
            raise _naming_prd_id(exc) from None
        self._remember(prd.id, parsed)
        return prd, parsed, False

    async def parsed(self, prd: Prd) -> ParsedPrd:
        """A stored PRD as the planner reads it: its markdown parsed again.

        A PRD stored before its markdown was kept gives only what ParsePRD
        returned (title, objectives, tech stack, constraints).
        """
        known = self._parsed.get(prd.id)
        if known is not None:
            return known
        if prd.markdown is None:
            return ParsedPrd(
                title=prd.title,
                objectives=prd.objectives,
                tech_stack=prd.tech_stack,
                constraints=prd.constraints,
            )
        parsed = await asyncio.to_thread(prd_files.parse_prd, prd.markdown)
        self._remember(prd.id, parsed)
        return parsed

    def _remember(self, prd_id: str, parsed: ParsedPrd) -> None:
        self._parsed[prd_id] = parsed
        while len(self._parsed) > PARSED_CACHE:
            del self._parsed[next(iter(self._parsed))]

    # --- GenerateTasksFromPRD -------------------------------------------------

    async def generate_tasks(
        self,
        prd_id: str,
        *,
        model: str = "",
        mode: GenerationMode = GenerationMode.CREATE,
        guard: WriteGuard = UNGUARDED,
    ) -> Generated:
        """Plan the PRD's tasks and write them all in one transaction, or nothing.

        With `mode` REPLACE or SYNC, the PRD's existing tasks are matched to
        the plan inside that transaction (regeneration.py). The planner works
        to `guard`'s deadline; the transaction commits only if `guard` still
        holds right before COMMIT.
        """
        self._require(prd_id, "prd_id")
        prd, parsed, stored = await self._prd(prd_id)
        # Checked again when committing; here it saves the planner's time, and
        # sizes the answer a regeneration will carry.
        existing = _top_level_live(await self.book.read(self.store.tasks_of_prd, prd))
        if existing and mode is GenerationMode.CREATE:
            raise self._already_planned(prd, existing)
        plan = await self.planner.generate_tasks(parsed, model=model, deadline=guard.deadline)
        # Off the event loop: a 1 MiB PRD makes tens of thousands of tasks.
        plan = await asyncio.to_thread(self._bounded_plan, prd, plan)
        limit = self.book.limits.max_generated_tasks
        if len(plan.tasks) > limit:
            raise ResourceExhausted(
                f"prd_id: the PRD plans {len(plan.tasks)} tasks; the server creates at most "
                f"{limit} in one generation (rig grpc --max-generated-tasks). Split the PRD, "
                "or raise the limit"
            )
        # The new rows and their events are made here, off the writer: the
        # writer only has to store them (a large plan is tens of thousands).
        tasks, drafts = await asyncio.to_thread(_new_tasks, prd, plan)
        return await self.book.write(
            self._commit_generation,
            prd,
            stored,
            plan,
            tasks,
            drafts,
            mode,
            # The answer carries the new tasks, and a result for every item
            # and every task left over.
            guard=guard.answering(2 * len(tasks) + len(existing)),
        )

    def _bounded_plan(self, prd: Prd, plan: TaskPlan) -> TaskPlan:
        try:
            return bounded_plan(plan, self.book.limits)
        except OverLimit as exc:
            # The plan is what the PRD says (a model's answer was checked, and
            # sent back, by the Ollama planner already).
            raise InvalidArgument(
                "prd_id",
                f"the {plan.planner} planner's plan of the PRD {quoted(prd.title)} cannot be "
                f"stored: {exc}",
            ) from None

    def _already_planned(self, prd: Prd, existing: list[Task]) -> AlreadyExists:
        where = f" ({quoted(prd.resolved_path)})" if prd.resolved_path else ""
        return AlreadyExists(
            f"prd_id: the PRD {quoted(prd.title)}{where} already has {len(existing)} tasks, "
            f"such as {quoted(existing[0].title)} ({existing[0].id}); set replace_existing to "
            "archive those still in TODO and generate those afresh, or mode to "
            "GENERATION_MODE_SYNC to bring them in line with the PRD, keeping the work done"
        )

    def _commit_generation(
        self,
        prd: Prd,
        stored: bool,
        plan: TaskPlan,
        tasks: list[Task],
        drafts: list[EventDraft],
        mode: GenerationMode,
    ) -> Written[Generated]:
        # On the writer thread, inside the transaction: nothing can add or
        # change tasks of this PRD between this read and the writes below.
        if not stored:
            self.store.insert_prd(prd)
        every = self.store.tasks_of_prd(prd)
        existing = _top_level_live(every)
        if not existing:
            # The plan's rows, made off the writer, are all there is to write.
            events = self.store.insert_tasks(tasks, drafts)
            generated = Generated(
                prd_id=prd.id,
                tasks=tuple(tasks),
                archived_task_ids=(),
                planner=plan.planner,
                model=plan.model,
                results=tuple(Result(task, Outcome.CREATED) for task in tasks),
            )
            return self._answered(generated), events
        if mode is GenerationMode.CREATE:
            raise self._already_planned(prd, existing)
        made = self.matching(
            prd.id, plan, every, mode, tasks[0].created_at if tasks else now_rfc3339()
        )
        events = self.store.replace_statuses(made.archived, made.archive_drafts)
        events += self.store.insert_tasks(made.created, made.create_drafts)
        for after, version, update_drafts in made.updated:
            events += self.store.replace_task(after, version, update_drafts)
        generated = Generated(
            prd_id=prd.id,
            tasks=tuple(made.created),
            archived_task_ids=tuple(made.archived_ids),
            planner=plan.planner,
            model=plan.model,
            results=tuple(made.results),
        )
        return self._answered(generated), events

    def _answered(self, generated: Generated) -> Generated:
        """The generation with its answer encoded, still inside its transaction.

        A large generation's answer takes a while to build (ten thousand
        tasks: a few tenths of a second, more on a loaded machine); built
        after the commit, it could outlast the caller's deadline, and a
        caller told DEADLINE_EXCEEDED would find everything written. Built
        here, only publishing and sending follow the commit, and the guard's
        margin covers them.
        """
        if self._encode_generated is None:
            return generated
        return dataclasses.replace(generated, answer=self._encode_generated(generated))

    # --- OrchestrateTask ------------------------------------------------------

    async def orchestrate_task(
        self,
        task_id: str,
        *,
        model: str = "",
        test_type: str = "",
        expected_version: int | None = None,
        guard: WriteGuard = UNGUARDED,
    ) -> Orchestrated:
        """Route the task, plan its route's steps, then commit them all at the version read.

        The planner works to `guard`'s deadline; the commit needs `guard` to
        hold right before COMMIT.
        """
        self._require(task_id, "task_id")
        test_type = planner_test_type(test_type)
        task = await self.book.get_task(task_id)
        if expected_version is not None and expected_version != task.version:
            raise VersionConflict(
                f"task {quoted(task.id)} is at version {task.version}, not the expected "
                f"{expected_version}"
            )
        if task.status in (TaskStatus.ARCHIVED, TaskStatus.COMPLETED):
            raise FailedPrecondition(
                f"task {quoted(task.id)} is {task.status.contract_name}: there is nothing to "
                "orchestrate; set its status to TASK_STATUS_TODO first to orchestrate it"
            )
        if task.status in (TaskStatus.ORCHESTRATION_COMPLETE, TaskStatus.DECOMPOSED):
            return await self._finished_before(task)
        if route(task).route == "decompose":
            # Checked again when committing; here it saves the planner's time.
            self._check_room(task, len(task.subtask_ids), MIN_SUBTASKS)
        context = await self._context(task)
        made = await plan_orchestration(
            self.planner, context, test_type=test_type, model=model, deadline=guard.deadline
        )
        try:
            made = bounded_orchestration(made, self.book.limits)
        except OverLimit as exc:
            raise FailedPrecondition(
                f"the {made.planner} planner's orchestration of task {quoted(task.id)} cannot "
                f"be stored: {exc}"
            ) from None
        return await self.book.write(self._commit_orchestration, task, made, guard=guard)

    def _check_room(self, task: Task, count: int, adding: int) -> None:
        """Refuse a decomposition that would take `task` past the subtask limit."""
        limit = self.book.limits.max_subtasks
        if count + adding > limit:
            raise ResourceExhausted(
                f"task_id: task {quoted(task.id)} has {count} subtasks; decomposing it adds "
                f"{'at least ' if adding == MIN_SUBTASKS else ''}{adding}, beyond the "
                f"server's limit of {limit} (rig grpc --max-subtasks); nothing was written"
            )

    async def _context(self, task: Task) -> TaskContext:
        """The task with its PRD and the tasks around it (its PRD's, its dependencies)."""
        prd: ParsedPrd | None = None
        related: list[Task] = []
        if task.source_prd_id:
            stored = await self.book.read(self.store.get_prd, task.source_prd_id)
            if stored is not None:
                prd = await self.parsed(stored)
                related = [
                    t
                    for t in await self.book.read(self.store.tasks_of_prd, stored)
                    if t.status is not TaskStatus.ARCHIVED or t.id in task.dependencies
                ]
        known = {t.id for t in related}
        for needed in task.dependencies:
            if needed not in known:
                found = await self.book.read(self.store.get_task, needed)
                if found is not None:
                    related.append(found)
        return TaskContext(task=task, prd=prd, related=tuple(related))

    async def _finished_before(self, task: Task) -> Orchestrated:
        enhancements = await self.book.read(self.store.enhancements_of, task.id)
        tests = await self.book.read(self.store.comprehension_tests_of, task.id)
        subtasks = []
        for subtask_id in task.subtask_ids:
            found = await self.book.read(self.store.get_task, subtask_id)
            if found is not None:
                subtasks.append(found)
        return Orchestrated(
            task=task,
            routing_decision=PASS,
            enhancement=enhancements[-1] if enhancements else None,
            test=tests[-1] if tests else None,
            subtasks=tuple(subtasks),
            planner="",
            model="",
            score=0,
            reasons=(),
        )

    def _commit_orchestration(self, read: Task, made: Orchestration) -> Written[Orchestrated]:
        current = self.store.get_task(read.id)
        if current is None:
            raise NotFound(f"task {quoted(read.id)} not found")
        if current.version != read.version:
            raise VersionConflict(
                f"task {quoted(read.id)} changed while it was being orchestrated (version "
                f"{read.version} was read, it is now at {current.version}); nothing was written"
            )
        return _Commit(self, current, made).run()


class _Commit:
    """One orchestration's writes, in the order its events are published."""

    def __init__(self, planning: Planning, task: Task, made: Orchestration) -> None:
        self.planning = planning
        self.store = planning.store
        self.task = task
        self.made = made
        self.now = now_rfc3339()
        self.events: list[Event] = []
        self.planner = made.planner
        self.model = made.model

    def move(self, status: TaskStatus) -> None:
        """One step of the route: the new status at the next version, and STATUS_CHANGED."""
        before = self.task
        if before.status is status:
            return
        self.task = dataclasses.replace(
            before, status=status, version=before.version + 1, updated_at=self.now
        )
        draft = EventDraft.new(
            EventType.STATUS_CHANGED,
            self.task,
            self.now,
            previous_status=before.status.contract_name,
        )
        self.events += self.store.replace_task(self.task, before.version, [draft])

    def finish(self, *drafts: EventDraft) -> None:
        """The route's closing events, about the task as it now stands."""
        self.events += self.store.replace_task(self.task, self.task.version, list(drafts))

    def run(self) -> Written[Orchestrated]:
        made = self.made
        enhancement: EnhancementRecord | None = None
        test: ComprehensionTestRecord | None = None
        subtasks: tuple[Task, ...] = ()
        if made.decomposition is not None:
            self.move(TaskStatus.PENDING_DECOMPOSITION)
            subtasks = self._subtasks()
            self.task = dataclasses.replace(
                self.task, subtask_ids=(*self.task.subtask_ids, *(t.id for t in subtasks))
            )
            self.move(TaskStatus.DECOMPOSED)
            decomposed = EventDraft.new(
                EventType.DECOMPOSED,
                self.task,
                self.now,
                subtask_ids=",".join(t.id for t in subtasks),
                planner=self.planner,
                model=self.model,
            )
            self.finish(decomposed, self._orchestrated(test_type=""))
        else:
            assert made.enhancement is not None and made.test is not None
            self.move(TaskStatus.PENDING_ENHANCEMENT)
            enhancement = EnhancementRecord(
                id=str(uuid.uuid4()),
                task_id=self.task.id,
                timestamp=self.now,
                enhancement_type=made.enhancement.enhancement_type,
                content=made.enhancement.content,
                planner=made.enhancement.planner,
                model=made.enhancement.model,
            )
            self.store.insert_enhancement(enhancement)
            self.move(TaskStatus.PENDING_COMPREHENSION_TEST)
            test = ComprehensionTestRecord(
                id=str(uuid.uuid4()),
                task_id=self.task.id,
                timestamp=self.now,
                test_type=made.test.test_type,
                question=made.test.question,
                options=made.test.options,
                correct_answer=made.test.correct_answer,
                planner=made.test.planner,
                model=made.test.model,
            )
            self.store.insert_comprehension_test(test)
            self.move(TaskStatus.ORCHESTRATION_COMPLETE)
            self.finish(self._orchestrated(test_type=test.test_type))
        result = Orchestrated(
            task=self.task,
            routing_decision=made.routing.route,
            enhancement=enhancement,
            test=test,
            subtasks=subtasks,
            planner=self.planner,
            model=self.model,
            score=made.routing.score,
            reasons=made.routing.reasons,
        )
        return result, self.events

    def _subtasks(self) -> tuple[Task, ...]:
        assert self.made.decomposition is not None
        parent = self.task
        # Counted inside the transaction: whatever committed since the task
        # was read (another orchestration, AddTask) is in the count.
        count = self.store.subtask_count(parent.id) or 0
        self.planning._check_room(parent, count, len(self.made.decomposition.subtasks))
        subtasks = tuple(
            Task(
                id=str(uuid.uuid4()),
                title=part.title,
                status=TaskStatus.TODO,
                created_at=self.now,
                updated_at=self.now,
                version=1,
                assignee=part.assignee,
                due_date=part.due_date,
                source_prd_id=parent.source_prd_id,
                parent_task_id=parent.id,
                complexity=part.complexity,
                reasoning=part.reasoning,
                context_files=part.context_files,
            )
            for part in self.made.decomposition.subtasks
        )
        drafts = [
            EventDraft.new(
                EventType.CREATED, task, self.now, planner=self.planner, model=self.model
            )
            for task in subtasks
        ]
        self.events += self.store.insert_tasks(subtasks, drafts)
        return subtasks

    def _orchestrated(self, test_type: str) -> EventDraft:
        return EventDraft.new(
            EventType.ORCHESTRATED,
            self.task,
            self.now,
            routing_decision=self.made.routing.route,
            planner=self.planner,
            model=self.model,
            test_type=test_type,
            complexity_score=str(self.made.routing.score),
        )
