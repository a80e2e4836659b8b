"""A task id or the start of one, as git takes a short hash.

The server has no prefix lookup, so a prefix is matched here: first the
exact id (GetTask), then every task's id, page by page (ListTasks, archived
ones after the others), when there are at most listing.SCAN_LIMIT tasks in
all. With more, only the full id is taken: the prefix could not be shown to
be unambiguous.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING

import grpc
from rigger.v1 import rigger_pb2 as pb

from rigger_server.console import listing
from rigger_server.console.exitcodes import AMBIGUOUS, NOT_FOUND, USAGE, ConsoleError

if TYPE_CHECKING:
    from rigger.v1.rigger_pb2_grpc import RiggerServiceAsyncStub

MIN_PREFIX = 4
# Candidates an ambiguous prefix names on stderr.
MAX_NAMED = 10
_ID_CHARACTERS = frozenset(string.hexdigits + "-")

HELP = (
    f"A task id may be shortened to a prefix of {MIN_PREFIX} or more characters when only "
    f"one task's id starts with it (checked against up to {listing.SCAN_LIMIT} tasks, archived "
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
    archived = pb.ListTasksRequest(status=pb.TASK_STATUS_ARCHIVED)
    every = (pb.ListTasksRequest(), archived)  # ListTasks leaves archived tasks out
    total = sum([await listing.count(stub, query, call_timeout) for query in every])
    if total > listing.SCAN_LIMIT:
        raise ConsoleError(
            AMBIGUOUS,
            f"cannot tell which task {text!r} means: the server holds {total} tasks and rig "
            f"matches a prefix against {listing.SCAN_LIMIT} at most; give the full id",
        )
    prefix = text.lower()
    # By id: a task archived during the scan may be met twice.
    matches = {
        task.id: task
        for query in every
        async for page in listing.pages(stub, query, 0, None, call_timeout)
        for task in page
        if task.id.startswith(prefix)
    }
    found = list(matches.values())
    if len(found) == 1:
        return found[0].id
    if not found:
        raise ConsoleError(NOT_FOUND, f"no task id is or starts with {text!r}")
    named = "".join(f"\n  {task.id}  {task.title[:60]!r}" for task in found[:MAX_NAMED])
    more = f"\n  ... and {len(found) - MAX_NAMED} more" if len(found) > MAX_NAMED else ""
    raise ConsoleError(AMBIGUOUS, f"{len(found)} task ids start with {text!r}:{named}{more}")
