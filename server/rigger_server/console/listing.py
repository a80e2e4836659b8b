"""Reading many tasks from ListTasks: page by page, and only as many as rig will hold."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from rigger.v1 import rigger_pb2 as pb

if TYPE_CHECKING:
    from rigger.v1.rigger_pb2_grpc import RiggerServiceAsyncStub

# Tasks one ListTasks call asks for: a page is at most about 0.5 MB, far
# below a client's 4 MiB receive limit.
PAGE = 500
# Most tasks rig reads to answer one question that needs all of them (a
# prefix, a sort, the next task): 40 pages, under a second on the loopback.
SCAN_LIMIT = 20_000


async def count(
    stub: RiggerServiceAsyncStub, query: pb.ListTasksRequest, call_timeout: float
) -> int:
    """How many tasks match `query`'s filters."""
    request = pb.ListTasksRequest()
    request.CopyFrom(query)
    request.limit = 1
    return (await stub.ListTasks(request, timeout=call_timeout)).total_count


async def pages(
    stub: RiggerServiceAsyncStub,
    query: pb.ListTasksRequest,
    offset: int,
    limit: int | None,
    call_timeout: float,
) -> AsyncIterator[list[pb.Task]]:
    """The tasks matching `query`'s filters from `offset` on, a page per call, each once."""
    seen: set[str] = set()
    while limit is None or limit > 0:
        request = pb.ListTasksRequest()
        request.CopyFrom(query)
        request.offset = offset
        request.limit = PAGE if limit is None else min(limit, PAGE)
        reply = await stub.ListTasks(request, timeout=call_timeout)
        # A task added meanwhile pushes the others one place on: the
        # next page then starts with one this page already had.
        page = [task for task in reply.tasks if task.id not in seen]
        seen.update(task.id for task in page)
        if page:
            yield page
        offset += len(reply.tasks)
        if limit is not None:
            limit -= len(page)
        if len(reply.tasks) < request.limit or offset >= reply.total_count:
            return
