"""A task id or the start of one, as git takes a short hash.

The server has no prefix lookup, so a prefix is matched here: first the
exact id (GetTask), then the ids of the newest tasks, page by page (ListTasks,
archived ones after the others), at most SCAN_LIMIT of them. A prefix counts
only if the scan saw every task: with more tasks than that, give the full id.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING

import grpc
from rigger.v1 import rigger_pb2 as pb

from rigger_server.console.exitcodes import AMBIGUOUS, NOT_FOUND, USAGE, ConsoleError

if TYPE_CHECKING:
    from rigger.v1.rigger_pb2_grpc import RiggerServiceAsyncStub

MIN_PREFIX = 4
# Tasks a prefix is matched against, and tasks one ListTasks page returns:
# 40 pages of about 0.5 MB at most, which the loopback serves in seconds.
SCAN_LIMIT = 20_000
PAGE = 500
# Candidates an ambiguous prefix names on stderr.
MAX_NAMED = 10
_ID_CHARACTERS = frozenset(string.hexdigits + "-")

HELP = (
    f"A task id may be shortened to a prefix of {MIN_PREFIX} or more characters when only "
    f"one task's id starts with it (checked against up to {SCAN_LIMIT} tasks, archived "
    "ones included; with more, give the full id)."
)


async def resolve(stub: RiggerServiceAsyncStub, text: str, call_timeout: float) -> str:
    """The id of the one task whose id is `text` or starts with it."""
    try:
        reply = await stub.GetTask(pb.GetTaskRequest(task_id=text), timeout=call_timeout)
        return reply.task.id
    except grpc.aio.AioRpcError as err:
        if err.code() != grpc.StatusCode.NOT_FOUND or not set(text) <= _ID_CHARACTERS:
            raise
    if len(text) < MIN_PREFIX:
        raise ConsoleError(
            USAGE, f"no task has the id {text!r}, and a prefix needs {MIN_PREFIX} characters"
        )
    prefix = text.lower()
    found: dict[str, pb.Task] = {}
    seen = 0
    total = 0
    for status in (None, pb.TASK_STATUS_ARCHIVED):
        offset = 0
        while True:
            request = pb.ListTasksRequest(limit=PAGE, offset=offset)
            if status is not None:
                request.status = status
            page = await stub.ListTasks(request, timeout=call_timeout)
            if offset == 0:
                total += page.total_count
            for task in page.tasks:
                if task.id.startswith(prefix):
                    found[task.id] = task
            seen += len(page.tasks)
            offset += len(page.tasks)
            if len(page.tasks) < PAGE or offset >= page.total_count or seen >= SCAN_LIMIT:
                break
        if seen >= SCAN_LIMIT:
            break
    complete = seen >= total
    if len(found) == 1 and complete:
        return next(iter(found))
    if not found and complete:
        raise ConsoleError(NOT_FOUND, f"no task id is or starts with {text!r}")
    why = (
        f"{len(found)} task ids start with {text!r}"
        if complete
        else f"cannot tell which task {text!r} means: the server holds {total} tasks "
        f"and rig matches a prefix against {SCAN_LIMIT} at most; give the full id"
    )
    named = "".join(
        f"\n  {task.id}  {task.title[:60]!r}" for task in list(found.values())[:MAX_NAMED]
    )
    more = f"\n  ... and {len(found) - MAX_NAMED} more" if len(found) > MAX_NAMED else ""
    raise ConsoleError(AMBIGUOUS, f"{why}{named}{more}")
