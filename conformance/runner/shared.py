"""A server shared with others (`--target`): judging a run on what it changed itself.

A fresh server's store and log start empty, and a case is written for one.
On a server that already holds tasks and events, the runner takes a
baseline when a run begins and judges the run against it:

- **sequences**: the log's head (the `rigger-head-sequence` header of a
  subscription the runner opens and cancels). A case's literal sequence
  numbers (`sequence: 1`, `after_sequence: 0`, a sequence header) count from
  it, as they count from 0 on a fresh server; so do transcripts, status
  messages included for numbers between that head and the last one the run
  could have met (the head when it ends, or the largest it sent).
- **ListTasks**: how many tasks matched each of the case's ListTasks filters
  (`status`, `assignee`). Answers are newest first, so those tasks are the
  last ones: the runner narrows each ListTasks page (`limit`, `offset`) to
  the run's own matches, counted just before the call, and judges the answer
  with the others left out of `total_count`, as if the store held only the
  run's tasks. (So an unbounded listing never carries anyone else's tasks,
  which may be many and large; `limit: 0` is sent as the run's count.)
- **clean-up**: how many tasks were live. When the run ends the newest live
  tasks beyond that number are the run's; the runner archives them
  (DeleteTask) unless `--keep`.

Nobody else may write to the server while the suite runs (runs on it go one
at a time): a task someone else adds meanwhile counts as the run's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import grpc
from rigger.v1 import rigger_pb2 as pb

from conformance import cases as c
from conformance.cases import messages
from conformance.cases.bindings import Bindings
from conformance.targets import profiles
from conformance.targets.capabilities import SERVICE_NAME
from conformance.targets.target import ClientSecurity

TIMEOUT_S = 10.0
# Tasks archived per ListTasks page when a run tidies up: 16 of the largest
# title rig grpc takes (131 072 characters, up to 512 KiB) make 8 MiB.
TIDY_PAGE = 16
# The largest answer the runner's own connection reads: a page above, with room.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
SEQUENCE_KEYS = frozenset({"sequence", "after_sequence"})
SEQUENCE_METADATA_SUFFIX = "-sequence"
# A literal this large means "beyond any log" (2^64-1 in replay_beyond_head_is_invalid):
# it is left as written.
LARGEST_SHIFTED = 2**63

Filter = tuple[int | None, str | None]  # (status, assignee) of a ListTasks request


class SharedServerError(RuntimeError):
    """The baseline or the clean-up failed; the message says which call and why."""


@dataclasses.dataclass
class Baseline:
    """What the server held when the run began."""

    head: int = 0
    # ListTasks matches per filter; a filter missing here is judged as answered.
    counts: dict[Filter, int] = dataclasses.field(default_factory=dict)
    live: int = 0


def filter_of(request: pb.ListTasksRequest) -> Filter:
    """The (status, assignee) a ListTasks request filters by."""
    return (
        request.status if request.HasField("status") else None,
        request.assignee if request.HasField("assignee") else None,
    )


def shift(template: Any, base: int, key: str = "") -> Any:
    """A case value with its literal sequence numbers counted from `base`.

    Literal: an integer or a string of digits under a sequence key
    (`sequence`, `after_sequence`, a `...-sequence` header); references and
    matching operators are left alone.
    """
    return Shifting(base)(template) if base else template


class Shifting:
    """Counts a run's literal sequences from `base`, noting the largest number it made."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.largest = base

    def __call__(self, template: Any, key: str = "") -> Any:
        """The value with its literal sequences shifted (see `shift`)."""
        if isinstance(template, Mapping):
            return {k: self(v, k if isinstance(k, str) else "") for k, v in template.items()}
        if isinstance(template, list | tuple):
            return [self(item, key) for item in template]
        if not (key in SEQUENCE_KEYS or key.endswith(SEQUENCE_METADATA_SUFFIX)):
            return template
        if isinstance(template, bool):
            return template
        if isinstance(template, int) and 0 <= template < LARGEST_SHIFTED:
            return self._noted(template + self.base)
        if isinstance(template, str) and template.isdigit() and int(template) < LARGEST_SHIFTED:
            return str(self._noted(int(template) + self.base))
        return template

    def _noted(self, value: int) -> int:
        self.largest = max(self.largest, value)
        return value


def window(baseline: Baseline, request: pb.ListTasksRequest, now: int) -> pb.ListTasksRequest:
    """The request narrowed to the run's own matches, given how many tasks match `now`.

    The run's tasks are the newest `now - before` matches, so the case's page
    (`offset`, `limit`) is cut to them: the answer then holds nothing of
    anyone else's (whose titles may be large, and whose archived tasks only
    ever grow in number). A page beyond the run's tasks asks past the end.
    """
    before = baseline.counts.get(filter_of(request))
    if before is None:
        return request
    ours = max(now - before, 0)
    narrowed = pb.ListTasksRequest()
    narrowed.CopyFrom(request)
    room = ours - request.offset
    if room <= 0:
        narrowed.offset = max(now, request.offset)
        narrowed.ClearField("limit")
    elif not request.limit or request.limit > room:
        narrowed.limit = room
    return narrowed


def view(baseline: Baseline, request: pb.ListTasksRequest, response: Any) -> tuple[Any, str]:
    """The ListTasks answer as it would be with only the run's tasks: (answer, problem or "")."""
    before = baseline.counts.get(filter_of(request))
    if before is None or not isinstance(response, pb.ListTasksResponse):
        return response, ""
    ours = response.total_count - before
    if ours < 0:
        return response, (
            f"total_count {response.total_count} is below the {before} tasks that matched "
            "this filter when the run began (a shared server: nobody else may write meanwhile)"
        )
    seen = pb.ListTasksResponse()
    seen.CopyFrom(response)
    # The page starts at `offset` in the newest-first list; the run's tasks are its first `ours`.
    del seen.tasks[max(0, ours - request.offset) :]
    seen.total_count = ours
    return seen, ""


class SharedServer:
    """The runner's own connection to a shared server: baselines and clean-up."""

    def __init__(self, address: str, security: ClientSecurity) -> None:
        # Its own reads are pages of the run's tasks, whose titles may be large.
        self.channel = profiles.open_channel(
            address,
            security.channel_credentials(),
            security.token,
            options=(("grpc.max_receive_message_length", MAX_ANSWER_BYTES),),
        )
        self._list = self._unary("ListTasks", pb.ListTasksRequest, pb.ListTasksResponse)
        self._delete = self._unary("DeleteTask", pb.DeleteTaskRequest, pb.DeleteTaskResponse)

    def _unary(self, method: str, request: type[Any], response: type[Any]) -> Callable[..., Any]:
        return self.channel.unary_unary(
            f"/{SERVICE_NAME}/{method}",
            request_serializer=request.SerializeToString,
            response_deserializer=response.FromString,
        )

    def close(self) -> None:
        """Close the connection."""
        self.channel.close()

    def head(self) -> int:
        """The log's head now (0 when a subscription does not name it)."""
        try:
            return profiles.head_sequence(self.channel, TIMEOUT_S) or 0
        except grpc.RpcError as exc:
            raise SharedServerError(
                f"SubscribeToTaskEvents (to read the head): {exc.code().name}: {exc.details()}"
            ) from None

    def count(self, matching: Filter) -> int:
        """How many tasks match a filter now."""
        status, assignee = matching
        request = pb.ListTasksRequest(limit=1)
        if status is not None:
            request.status = status  # type: ignore[assignment]
        if assignee is not None:
            request.assignee = assignee
        try:
            answer = self._list(request, timeout=TIMEOUT_S)
        except grpc.RpcError as exc:
            raise SharedServerError(
                f"ListTasks({_text(matching)}): {exc.code().name}: {exc.details()}"
            ) from None
        return int(answer.total_count)

    def begin(self, case: c.Case) -> Baseline:
        """The baseline for a run of `case`: the head, its ListTasks filters' counts, live tasks."""
        baseline = Baseline(head=self.head(), live=self.count((None, None)))
        baseline.counts[(None, None)] = baseline.live
        for matching in _list_filters(case):
            if matching not in baseline.counts:
                try:
                    baseline.counts[matching] = self.count(matching)
                except SharedServerError:
                    continue  # a filter the server refuses (status 42): the step expects that
        return baseline

    def tidy(self, baseline: Baseline, *, keep: bool) -> int:
        """Archive the live tasks beyond the baseline (the run's); how many (counted if `keep`)."""
        extra = self.count((None, None)) - baseline.live
        if keep or extra <= 0:
            return max(extra, 0)
        archived = 0
        while archived < extra:
            try:
                page = self._list(
                    pb.ListTasksRequest(limit=min(TIDY_PAGE, extra - archived)), timeout=TIMEOUT_S
                )
            except grpc.RpcError as exc:
                raise SharedServerError(
                    f"listing the run's tasks to archive them: ListTasks: {exc.code().name}: "
                    f"{exc.details()} ({archived} archived, {extra - archived} left)"
                ) from None
            if not page.tasks:
                break
            for task in page.tasks:
                try:
                    self._delete(pb.DeleteTaskRequest(task_id=task.id), timeout=TIMEOUT_S)
                except grpc.RpcError as exc:
                    raise SharedServerError(
                        f"archiving the run's task {task.id}: DeleteTask: {exc.code().name}: "
                        f"{exc.details()} ({archived} archived, {extra - archived} left)"
                    ) from None
                archived += 1
        return archived


def _list_filters(case: c.Case) -> list[Filter]:
    """The (status, assignee) filters of the case's ListTasks calls (written out: load checks)."""
    method = messages.SERVICE.methods_by_name["ListTasks"]
    found: list[Filter] = []
    for step in case.walk():
        if not (isinstance(step, c.Call) and step.method == "ListTasks"):
            continue
        written = {k: v for k, v in step.request.items() if k in ("status", "assignee")}
        try:
            request = messages.build(method.input_type, Bindings().resolve(written), "request")
        except (messages.MessageError, LookupError):
            continue
        assert isinstance(request, pb.ListTasksRequest)
        found.append(filter_of(request))
    return found


def _text(matching: Filter) -> str:
    status, assignee = matching
    parts = [f"status={status}"] * (status is not None) + [f"assignee={assignee!r}"] * (
        assignee is not None
    )
    return ", ".join(parts)
