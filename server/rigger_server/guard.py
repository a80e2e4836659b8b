"""What a write must still satisfy when it is applied, not only when its call started.

A call is checked when it arrives: its token, its deadline. A write is
applied later — after its request body arrived, after a planner thought for
minutes, after the writes queued before it — and by then the token may have
been revoked or the caller may have given up. A `WriteGuard` carries the
call's conditions to the writer thread (`writer.py`), which checks them
before it runs the write and again inside the transaction right before it
commits: a write whose guard fails there is not committed, so a caller told
UNAUTHENTICATED or DEADLINE_EXCEEDED finds nothing written.

The guard knows nothing of gRPC: the service hands it the deadline and a
plain callable that says whether the call's token is still accepted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from rigger_server.errors import DeadlineExceeded, Unauthenticated
from rigger_server.limits import ANSWER_SECONDS_PER_TASK, COMMIT_MARGIN_SECONDS
from rigger_server.planner.plans import Deadline


@dataclasses.dataclass(frozen=True, slots=True)
class WriteGuard:
    """A call's conditions on its writes: its deadline, and whether its token is still good."""

    deadline: Deadline | None = None
    # None: the server takes no tokens.
    authorized: Callable[[], bool] | None = None
    # Seconds that must be left before the deadline for the write to commit.
    margin: float = COMMIT_MARGIN_SECONDS

    def check(self) -> None:
        """Raise Unauthenticated or DeadlineExceeded if the write must not be applied now.

        A write needs `margin` left before its deadline: its commit, its
        events' publishing and its answer take time too, and an answer
        arriving after the caller gave up reads as DEADLINE_EXCEEDED.
        """
        if self.authorized is not None and not self.authorized():
            raise Unauthenticated(
                "the call's token was revoked before its write was applied; nothing was written"
            )
        if self.deadline is not None and self.deadline.remaining() <= self.margin:
            raise DeadlineExceeded(
                "the deadline passed before the write was committed; nothing was written"
            )

    def answering(self, tasks: int) -> WriteGuard:
        """This guard, with room left for an answer carrying `tasks` tasks."""
        return dataclasses.replace(self, margin=self.margin + tasks * ANSWER_SECONDS_PER_TASK)


UNGUARDED = WriteGuard()
