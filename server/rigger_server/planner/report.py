"""The planner quality report: what a planner makes of a few PRDs, readable at a glance.

For each PRD: the tasks it plans, each with its complexity score term by
term and the route it takes; then, as OrchestrateTask would, the
enhancement and both kinds of comprehension test of a task routed to
"enhance", or the subtasks (with their own scores) of one routed to
"decompose". Nothing is stored: the planner runs in process.

`nox -s planner_report` writes the offline planner's report to
examples/planner-report/offline.md (committed: tests/test_planner_report.py
fails when it is stale), and, when an Ollama answers at `--ollama-url`, the
Ollama planner's to ollama.md beside it (a model's answers vary: not
committed). Run as `python -m rigger_server.planner.report --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import sys
from collections.abc import Sequence

from rigger_server.domain import Task, TaskStatus
from rigger_server.errors import RiggerError
from rigger_server.planner.complexity import DECOMPOSE_AT, task_score
from rigger_server.planner.offline import OfflinePlanner
from rigger_server.planner.plans import Planner, TaskContext, TaskPlan
from rigger_server.prd import parse_prd

# The PRDs of the report, relative to the repository root: three shapes.
PRDS = (
    ("examples/PRD.md", "a short checklist beside objectives, constraints and prose"),
    ("examples/objectives-only.md", "objectives and prose only, no task list"),
    (
        "examples/checklist.md",
        "a checklist with owners, dates, dependencies and nested steps",
    ),
)
OFFLINE_REPORT = "examples/planner-report/offline.md"
OLLAMA_REPORT = "examples/planner-report/ollama.md"


def _stored(plan: TaskPlan) -> list[Task]:
    """The plan's tasks as a generation stores them, with ids t1, t2, ..."""
    return [
        Task(
            id=f"t{number}",
            title=planned.title,
            status=TaskStatus.COMPLETED if planned.done else TaskStatus.TODO,
            created_at="",
            updated_at="",
            version=1,
            assignee=planned.assignee,
            due_date=planned.due_date,
            source_prd_id="prd",
            complexity=planned.complexity,
            reasoning=planned.reasoning,
            context_files=planned.context_files,
            dependencies=tuple(f"t{index + 1}" for index in planned.dependencies),
        )
        for number, planned in enumerate(plan.tasks, start=1)
    ]


def _quoted(text: str) -> list[str]:
    return [f"> {line}".rstrip() for line in text.splitlines()] or [">"]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _score_line(task: Task) -> str:
    scored = task_score(task)
    route = "decompose" if scored.value >= DECOMPOSE_AT else "enhance"
    return f"Complexity **{scored.value}** ({'; '.join(scored.reasons)}) → {route}"


async def _task_section(planner: Planner, task: Task, context: TaskContext) -> list[str]:
    lines = [f"### {task.id}. {task.title}", ""]
    facts = [
        f"assignee: {task.assignee or '—'}",
        f"due: {task.due_date or '—'}",
        f"depends on: {', '.join(task.dependencies) or '—'}",
        f"status: {task.status.contract_name.removeprefix('TASK_STATUS_')}",
    ]
    lines += ["- " + " · ".join(facts)]
    if task.context_files:
        lines.append(f"- files: {', '.join(task.context_files)}")
    lines += [f"- {_score_line(task)}", f"- reasoning: {task.reasoning or '—'}", ""]
    if task.status is TaskStatus.COMPLETED:
        return [*lines, "Done in the PRD already: not orchestrated.", ""]
    if task_score(task).value >= DECOMPOSE_AT:
        decomposition = await planner.decompose(context)
        lines += [
            "**Subtasks**",
            "",
            "| # | title | score | route | reasoning |",
            "|---|---|---|---|---|",
        ]
        for number, part in enumerate(decomposition.subtasks, start=1):
            subtask = Task(
                id=f"{task.id}.{number}",
                title=part.title,
                status=TaskStatus.TODO,
                created_at="",
                updated_at="",
                version=1,
                assignee=part.assignee,
                due_date=part.due_date,
                parent_task_id=task.id,
                reasoning=part.reasoning,
            )
            scored = task_score(subtask)
            route = "decompose" if scored.value >= DECOMPOSE_AT else "enhance"
            lines.append(
                f"| {number} | {_cell(part.title)} | {scored.value} | {route} "
                f"| {_cell(part.reasoning)} |"
            )
        return [*lines, ""]
    enhancement = await planner.enhance(context)
    lines += [
        f"**Enhancement** ({enhancement.enhancement_type})",
        "",
        *_quoted(enhancement.content),
    ]
    choice = await planner.comprehension_test(context, enhancement, "multiple_choice")
    lines += ["", f"**Multiple choice**: {choice.question}", ""]
    lines += [
        f"- {'[x]' if option == choice.correct_answer else '[ ]'} {option}"
        for option in choice.options
    ]
    short = await planner.comprehension_test(context, enhancement, "short_answer")
    lines += ["", f"**Short answer**: {short.question}", "", f"Expected: {short.correct_answer}"]
    return [*lines, ""]


async def prd_section(planner: Planner, path: str, shape: str, markdown: str) -> list[str]:
    """One PRD's part of the report."""
    prd = parse_prd(markdown)
    lines = [f"## {path}: {prd.title}", "", f"Shape: {shape}."]
    try:
        plan = await planner.generate_tasks(prd)
    except RiggerError as exc:
        return [*lines, "", f"Planning failed: {exc}", ""]
    tasks = _stored(plan)
    lines += [
        "",
        f"{len(tasks)} tasks, planned by {plan.planner} (model {plan.model}).",
        "",
        "| # | title | assignee | due | depends on | score | route |",
        "|---|---|---|---|---|---|---|",
    ]
    for task in tasks:
        scored = task_score(task)
        route = "decompose" if scored.value >= DECOMPOSE_AT else "enhance"
        lines.append(
            f"| {task.id} | {_cell(task.title)} | {task.assignee or '—'} | "
            f"{task.due_date or '—'} | {', '.join(task.dependencies) or '—'} | "
            f"{scored.value} | {route} |"
        )
    lines.append("")
    for task in tasks:
        context = TaskContext(task=task, prd=prd, related=tuple(tasks))
        lines += await _task_section(planner, task, context)
    return lines


async def render(planner: Planner, root: pathlib.Path, name: str) -> str:
    """The whole report of `planner` (called `name` in its heading) on the PRDS under `root`."""
    lines = [
        f"# Planner report: {name}",
        "",
        "Written by `nox -s planner_report` (rigger_server/planner/report.py); do not edit.",
        "Each PRD's tasks as planned, then each task as OrchestrateTask would treat it:",
        "the complexity score term by term, and the enhancement with both kinds of",
        "comprehension test, or the subtasks with their own scores.",
        "",
    ]
    for path, shape in PRDS:
        markdown = (root / path).read_text(encoding="utf-8")
        lines += await prd_section(planner, path, shape, markdown)
    return "\n".join(lines).rstrip() + "\n"


async def render_offline(root: pathlib.Path) -> str:
    """The offline planner's report, as committed in OFFLINE_REPORT."""
    return await render(OfflinePlanner(), root, "offline")


async def _ollama_report(root: pathlib.Path, url: str, model: str) -> str | None:
    from rigger_server.planner.ollama import OllamaPlanner

    planner = OllamaPlanner(url, default_model=model)
    try:
        try:
            await planner.version()
        except RiggerError as exc:
            print(f"no Ollama report: {exc}", file=sys.stderr)
            return None
        return await render(planner, root, f"ollama ({model})")
    finally:
        await planner.aclose()


async def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", type=pathlib.Path, default=pathlib.Path(), help="repository root (default: .)"
    )
    parser.add_argument(
        "--ollama-url",
        default="",
        help="also report the Ollama planner when an Ollama answers here (default: none)",
    )
    parser.add_argument("--model", default="llama3.1", help="the Ollama model (default: llama3.1)")
    args = parser.parse_args(argv)
    root: pathlib.Path = args.root
    (root / OFFLINE_REPORT).write_text(await render_offline(root), encoding="utf-8")
    print(f"wrote {OFFLINE_REPORT}")
    if args.ollama_url:
        report = await _ollama_report(root, args.ollama_url, args.model)
        if report is not None:
            (root / OLLAMA_REPORT).write_text(report, encoding="utf-8")
            print(f"wrote {OLLAMA_REPORT} (not committed: a model's answers vary)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Write the reports (see the module docstring)."""
    return asyncio.run(_main(argv))


if __name__ == "__main__":
    raise SystemExit(main())
