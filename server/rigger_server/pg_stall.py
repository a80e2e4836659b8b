"""PostgreSQL connections that give up on a database that does not answer.

PostgreSQL's own timeouts (statement_timeout, lock_timeout) end a statement
that runs or waits too long, but only a running server can fire them: a
PostgreSQL that is stopped (SIGSTOP), frozen or cut off without a reset
answers nothing, and a thread waiting on its socket would wait for as long as
that lasts — the writer thread with it, and every write queued behind.

psycopg routes every wait on a connection's socket (a query, COMMIT, a
savepoint) through `Connection.wait`, which takes a timeout. These classes
give every wait a bound; a wait that runs out closes the connection, so
nothing more can be sent on it: a transaction whose COMMIT was not yet sent
is rolled back by PostgreSQL when it reads the closed connection, and can
never commit later. (A COMMIT already sent when the database stalled is in
doubt, as any commit whose answer is lost: it may still land.)
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.abc import PQGen
from psycopg.rows import TupleRow

# psycopg's own default interval between checks of a wait.
_INTERVAL = 0.1


def _stalled(seconds: float) -> psycopg.OperationalError:
    return psycopg.OperationalError(
        f"the database did not answer within {seconds:g} s; the connection was closed"
    )


class BoundedConnection(psycopg.Connection[TupleRow]):
    """A sync connection whose every wait on the database ends after `stall_seconds`."""

    stall_seconds: float = 7.0

    def wait(
        self, gen: PQGen[Any], interval: float = _INTERVAL, timeout: float | None = None
    ) -> Any:
        """As psycopg's; a wait without a timeout of its own ends after `stall_seconds`.

        Past it, the connection is closed and OperationalError raised.
        """
        if timeout is not None:
            return super().wait(gen, interval, timeout)
        try:
            return super().wait(gen, interval, self.stall_seconds)
        except psycopg.errors._WaitTimeout:
            self.pgconn.finish()
            raise _stalled(self.stall_seconds) from None


class BoundedAsyncConnection(psycopg.AsyncConnection[TupleRow]):
    """An async connection whose every wait on the database ends after `stall_seconds`.

    A wait given a timeout of its own (e.g. `notifies(timeout=...)`) keeps
    it, and psycopg's meaning of it.
    """

    stall_seconds: float = 5.0

    # psycopg's signature, timeout included: psycopg calls it so.
    async def wait(
        self,
        gen: PQGen[Any],
        interval: float = _INTERVAL,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Any:
        """As psycopg's; a wait without a timeout of its own ends after `stall_seconds`.

        Past it, the connection is closed and OperationalError raised.
        """
        if timeout is not None:
            return await super().wait(gen, interval, timeout)
        try:
            return await super().wait(gen, interval, self.stall_seconds)
        except psycopg.errors._WaitTimeout:
            self.pgconn.finish()
            raise _stalled(self.stall_seconds) from None
