"""What the client commands' exit status means: one code per class of failure.

The table is written once, here: `rig --help` prints it, docs/cli.md repeats
it, and tests/test_task_cli.py checks that table against it.
"""

from __future__ import annotations

import dataclasses

import grpc


@dataclasses.dataclass(frozen=True, slots=True)
class ExitClass:
    """One row of the table: the code, what it means, and the gRPC statuses it stands for."""

    code: int
    meaning: str
    statuses: frozenset[grpc.StatusCode] = frozenset()


_S = grpc.StatusCode

OK = ExitClass(0, "success")
SERVER_ERROR = ExitClass(
    1,
    "the server failed (INTERNAL, UNKNOWN, DATA_LOSS, UNIMPLEMENTED, or any status not below)",
    frozenset({_S.INTERNAL, _S.UNKNOWN, _S.DATA_LOSS, _S.UNIMPLEMENTED}),
)
USAGE = ExitClass(
    2, "usage: a bad flag or argument, or a local file (token, certificate, state) unusable"
)
INVALID = ExitClass(
    3,
    "the server refused a value (INVALID_ARGUMENT, OUT_OF_RANGE)",
    frozenset({_S.INVALID_ARGUMENT, _S.OUT_OF_RANGE}),
)
NOT_FOUND = ExitClass(
    4,
    "no such task or PRD (NOT_FOUND), or no task id starts with the prefix",
    frozenset({_S.NOT_FOUND}),
)
AMBIGUOUS = ExitClass(
    5, "a task id prefix names more than one task (or more tasks exist than rig checks)"
)
CONFLICT = ExitClass(
    6,
    "conflict: the task changed or its state forbids it "
    "(ABORTED, ALREADY_EXISTS, FAILED_PRECONDITION)",
    frozenset({_S.ABORTED, _S.ALREADY_EXISTS, _S.FAILED_PRECONDITION}),
)
DENIED = ExitClass(
    7,
    "not allowed: token or certificate refused (UNAUTHENTICATED, PERMISSION_DENIED)",
    frozenset({_S.UNAUTHENTICATED, _S.PERMISSION_DENIED}),
)
UNAVAILABLE = ExitClass(
    8,
    "no answer: no server at --addr, or none in time (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED)",
    frozenset({_S.UNAVAILABLE, _S.DEADLINE_EXCEEDED, _S.CANCELLED}),
)
EXHAUSTED = ExitClass(
    9,
    "a limit was reached: the server's (RESOURCE_EXHAUSTED) or rig's own",
    frozenset({_S.RESOURCE_EXHAUSTED}),
)
INTERRUPTED = ExitClass(130, "interrupted (Ctrl-C)")
OUTPUT_CLOSED = ExitClass(141, "stdout was closed by its reader (e.g. `rig watch | head`)")

TABLE: tuple[ExitClass, ...] = (
    OK,
    SERVER_ERROR,
    USAGE,
    INVALID,
    NOT_FOUND,
    AMBIGUOUS,
    CONFLICT,
    DENIED,
    UNAVAILABLE,
    EXHAUSTED,
    INTERRUPTED,
    OUTPUT_CLOSED,
)


def for_status(status: grpc.StatusCode) -> ExitClass:
    """The class a failed call's status falls in; SERVER_ERROR for any not named."""
    for row in TABLE:
        if status in row.statuses:
            return row
    return SERVER_ERROR


def help_text() -> str:
    """The table as `rig --help` prints it."""
    rows = "\n".join(f"  {row.code:>3}  {row.meaning}" for row in TABLE)
    return f"exit status of the task commands (add, list, ..., watch):\n{rows}"


class ConsoleError(Exception):
    """A failure a command reports on stderr and turns into its exit status."""

    def __init__(self, kind: ExitClass, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
