"""The task commands: rig add, list, show, update, delete, parse, generate and do.

Each is one or a few calls to `rig grpc`, which stays the only writer, so
every change reaches the sidecars as any other client's would.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Literal, get_args

import shtab
from rigger.v1 import rigger_pb2 as pb

from rigger_server.console import listing, output, prefixes, statuses
from rigger_server.console.connection import PLANNING_TIMEOUT_SECONDS, TASK_TIMEOUT_SECONDS, options
from rigger_server.console.exitcodes import EXHAUSTED, USAGE, ConsoleError
from rigger_server.console.numbers import UINT32_MAX, UINT64_MAX, up_to
from rigger_server.console.runner import client_command

if TYPE_CHECKING:
    from rigger.v1.rigger_pb2_grpc import RiggerServiceAsyncStub

    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

# `rig list --sort`: the first release's keys. created_at is the server's own
# order (newest first); each of the others, a key and whether it sorts
# descending, sorts every matching task here, so at most listing.SCAN_LIMIT.
SERVER_ORDER = "created_at"
SORT_KEYS: dict[str, tuple[Callable[[pb.Task], Any], bool]] = {
    "updated_at": (lambda task: task.updated_at, True),
    "title": (lambda task: task.title.casefold(), False),
    "status": (lambda task: task.status, False),
    "due_date": (lambda task: (not task.HasField("due_date"), task.due_date), False),
}
# The kinds of comprehension test OrchestrateTask writes.
TestType = Literal["short_answer", "multiple_choice"]

SORT_HELP = (
    "created_at (newest first, the server's order), updated_at (latest change first), "
    "title (A to Z), status (in the order of the lifecycle), due_date (soonest first, "
    "undated last)"
)


def add_parsers(commands: Commands) -> None:
    """Register the task commands on `rig`'s subcommands."""
    task_call = options(TASK_TIMEOUT_SECONDS)
    planning_call = options(PLANNING_TIMEOUT_SECONDS)

    def command(
        name: str, help_text: str, parent: argparse.ArgumentParser, *, task_id: bool = False
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text[0].upper() + help_text[1:] + ".",
            parents=[parent],
            epilog=prefixes.HELP if task_id else None,
        )
        sub.add_argument("--json", action="store_true", help="print JSON, one object a line")
        if task_id:
            sub.add_argument("task_id", metavar="TASK_ID", help="a task id, or its start")
        return sub

    add = command("add", "add a task", task_call)
    add.add_argument("title", nargs="+", metavar="TITLE", help="the title (words are joined)")
    add.add_argument("--assignee", help="who the task is assigned to")
    add.add_argument("--due-date", metavar="YYYY-MM-DD", help="when it is due")
    add.add_argument("--prd-id", dest="source_prd_id", help="the PRD the task comes from")
    add.add_argument("--parent-id", metavar="TASK_ID", help="make it a subtask of this task")
    add.epilog = prefixes.HELP
    add.set_defaults(run=client_command(_add))

    listing = command("list", "list tasks, newest first", task_call)
    listing.add_argument("--status", type=statuses.parse, help="only tasks with this status")
    listing.add_argument("--assignee", help="only tasks assigned to exactly this")
    listing.add_argument(
        "--sort",
        choices=[SERVER_ORDER, *SORT_KEYS],
        default=SERVER_ORDER,
        help=f"order: {SORT_HELP}",
    )
    listing.add_argument(
        "--limit", type=up_to(UINT32_MAX), default=0, help="at most N tasks (default: 0, all)"
    )
    listing.add_argument(
        "--offset", type=up_to(UINT32_MAX), default=0, help="skip the first N (default: 0)"
    )
    listing.epilog = (
        "Archived tasks are listed only with --status archived. Statuses: "
        + ", ".join(name.lower() for name in statuses.names())
        + "."
    )
    listing.set_defaults(run=client_command(_list))

    show = command("show", "show every field of one task", task_call, task_id=True)
    show.set_defaults(run=client_command(_show))

    update = command("update", "change a task's fields", task_call, task_id=True)
    update.add_argument("--status", type=statuses.parse, help="the new status")
    update.add_argument("--assignee", help="the new assignee; '' unassigns")
    update.add_argument("--due-date", metavar="YYYY-MM-DD", help="the new due date; '' clears it")
    update.add_argument("--title", help="the new title")
    _expected_version_flag(update, "change")
    update.set_defaults(run=client_command(_update))

    delete = command("delete", "archive a task", task_call, task_id=True)
    delete.set_defaults(run=client_command(_delete))

    parse = command("parse", "parse a PRD file and store it", task_call)
    parse_file = parse.add_argument(
        "prd_file",
        metavar="PRD_FILE",
        help="a markdown file inside the server's project root; a path that exists here is "
        "sent as an absolute path, any other as given (relative to the server's root)",
    )
    parse_file.complete = shtab.FILE  # type: ignore[attr-defined]
    parse.set_defaults(run=client_command(_parse))

    generate = command("generate", "plan a parsed PRD's tasks and create them", planning_call)
    generate.add_argument(
        "prd_id", metavar="PRD_ID", help="a prd_id from `rig parse`, or a PRD file as for parse"
    )
    _model_flag(generate)
    generate.add_argument(
        "--replace",
        action="store_true",
        help="archive the PRD's tasks still in TODO and plan afresh (default: refuse, exit 6)",
    )
    generate.set_defaults(run=client_command(_generate))

    do = command(
        "do",
        "orchestrate a task: enhance and test it, or decompose it",
        planning_call,
        task_id=True,
    )
    _model_flag(do)
    do.add_argument(
        "--test-type",
        choices=get_args(TestType),
        default="short_answer",
        help="the comprehension test's kind (default: %(default)s)",
    )
    _expected_version_flag(do, "orchestrate")
    do.set_defaults(run=client_command(_do))


def _model_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="", help="the model to plan with (server default)")


def _expected_version_flag(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument(
        "--expected-version",
        type=up_to(UINT64_MAX),
        metavar="N",
        help=f"{verb} it only if it is still at version N (else exit 6)",
    )


def _print_tasks(args: argparse.Namespace, tasks: list[pb.Task], *, header: bool = True) -> None:
    if args.json:
        for task in tasks:
            output.json_line(task)
    else:
        output.table(output.task_rows(tasks), output.TASK_HEADER if header else None)


async def _add(stub: RiggerServiceAsyncStub, args: argparse.Namespace) -> int:
    request = pb.AddTaskRequest(title=" ".join(args.title))
    for field in ("assignee", "due_date", "source_prd_id"):
        if getattr(args, field) is not None:
            setattr(request, field, getattr(args, field))
    if args.parent_id is not None:
        request.parent_task_id = await prefixes.resolve(stub, args.parent_id, args.timeout)
    reply = await stub.AddTask(request, timeout=args.timeout)
    _print_tasks(args, [reply.task])
    return 0


async def _list(stub: RiggerServiceAsyncStub, args: argparse.Namespace) -> int:
    query = pb.ListTasksRequest()
    if args.status is not None:
        query.status = args.status
    if args.assignee is not None:
        query.assignee = args.assignee
    if args.sort == SERVER_ORDER:
        pages = listing.pages(stub, query, args.offset, args.limit or None, args.timeout)
    else:
        pages = _sorted(stub, query, args)
    printed = 0
    async for page in pages:
        _print_tasks(args, page, header=printed == 0)
        printed += len(page)
    if printed == 0 and not args.json:
        print("no tasks")
    return 0


async def _sorted(
    stub: RiggerServiceAsyncStub, query: pb.ListTasksRequest, args: argparse.Namespace
) -> AsyncIterator[list[pb.Task]]:
    total = await listing.count(stub, query, args.timeout)
    if total > listing.SCAN_LIMIT:
        raise ConsoleError(
            EXHAUSTED,
            f"--sort {args.sort} sorts every matching task, and {total} match: more than "
            f"the {listing.SCAN_LIMIT} rig sorts. Narrow them with --status or --assignee, "
            f"or use --sort {SERVER_ORDER} (the server's order).",
        )
    every = [t async for page in listing.pages(stub, query, 0, None, args.timeout) for t in page]
    key, descending = SORT_KEYS[args.sort]
    every.sort(key=key, reverse=descending)
    end = args.offset + args.limit if args.limit else None
    yield every[args.offset : end]


async def _show(stub: RiggerServiceAsyncStub, args: argparse.Namespace) -> int:
    task_id = await prefixes.resolve(stub, args.task_id, args.timeout)
    reply = await stub.GetTask(pb.GetTaskRequest(task_id=task_id), timeout=args.timeout)
    if args.json:
        output.json_line(reply.task)
    else:
        output.details(reply.task)
    return 0


async def _update(stub: RiggerServiceAsyncStub, args: argparse.Namespace) -> int:
    fields = ("status", "assignee", "due_date", "title")
    if all(getattr(args, field) is None for field in fields):
        raise ConsoleError(
            USAGE, "nothing to change: give --status, --assignee, --due-date or --title"
        )
    request = pb.UpdateTaskRequest(task_id=await prefixes.resolve(stub, args.task_id, args.timeout))
    for field in (*fields, "expected_version"):
        if getattr(args, field) is not None:
            setattr(request, field, getattr(args, field))
    reply = await stub.UpdateTask(request, timeout=args.timeout)
    _print_tasks(args, [reply.task])
    return 0


async def _delete(stub: RiggerServiceAsyncStub, args: argparse.Namespace) -> int:
    task_id = await prefixes.resolve(stub, args.task_id, args.timeout)
    reply = await stub.DeleteTask(pb.DeleteTaskRequest(task_id=task_id), timeout=args.timeout)
    if args.json:
        output.json_line({"task_id": task_id, "success": reply.success})
    else:
        print(f"archived {task_id}")
    return 0


def _server_path(text: str) -> str:
    """A PRD path as the server should see it: absolute when it names a file here."""
    path = pathlib.Path(text)
    return str(path.resolve()) if path.is_file() else text


async def _parse(stub: RiggerServiceAsyncStub, args: argparse.Namespace) -> int:
    request = pb.ParsePRDRequest(prd_file_path=_server_path(args.prd_file))
    reply = await stub.ParsePRD(request, timeout=args.timeout)
    if args.json:
        output.json_line(reply)
    else:
        output.details(reply)
    return 0


async def _generate(stub: RiggerServiceAsyncStub, args: argparse.Namespace) -> int:
    request = pb.GenerateTasksFromPRDRequest(
        prd_id=_server_path(args.prd_id), model=args.model, replace_existing=args.replace
    )
    reply = await stub.GenerateTasksFromPRD(request, timeout=args.timeout)
    _print_tasks(args, list(reply.tasks))
    archived = f"; archived {', '.join(reply.archived_task_ids)}" if reply.archived_task_ids else ""
    print(
        f"generated {reply.tasks_generated} tasks from PRD {reply.prd_id} "
        f"(planner {reply.planner}, model {output.safe(reply.model)}){archived}",
        file=sys.stderr,
    )
    return 0


async def _do(stub: RiggerServiceAsyncStub, args: argparse.Namespace) -> int:
    request = pb.OrchestrateTaskRequest(
        task_id=await prefixes.resolve(stub, args.task_id, args.timeout),
        model=args.model,
        test_type=args.test_type,
    )
    if args.expected_version is not None:
        request.expected_version = args.expected_version
    reply = await stub.OrchestrateTask(request, timeout=args.timeout)
    if args.json:
        output.json_line(reply)
        return 0
    result, task = reply.result, reply.task
    print(f"task:     {task.id} {statuses.label(task.status)} (version {task.version})")
    print(f"title:    {output.safe(task.title)}")
    by = f" by {result.planner}/{output.safe(result.model)}" if result.planner else ""
    score = f", score {result.complexity_score}" if result.complexity_score else ""
    print(f"decision: {result.routing_decision}{score}{by}")
    for reason in result.routing_reasons:
        print(f"          {output.safe(reason)}")
    if result.HasField("enhancement"):
        print(f"enhancement ({output.safe(result.enhancement.enhancement_type)}):")
        for line in output.safe_lines(result.enhancement.content):
            print(f"  {line}")
    if result.HasField("comprehension_test"):
        test = result.comprehension_test
        print(f"test ({test.test_type}): {output.safe(test.question)}")
        for option in test.options:
            print(f"  - {output.safe(option)}")
        print(f"  answer: {output.safe(test.correct_answer)}")
    if result.subtasks:
        print("subtasks:")
        output.table(output.task_rows(result.subtasks))
    return 0
