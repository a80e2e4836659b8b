"""A replica LISTENs for the PostgreSQL log's commits: "the log holds events up to N".

Every write transaction of every replica ends with `NOTIFY rigger_log, '<head>'`
(`pg_store.py`); PostgreSQL delivers it to the listeners only if the
transaction commits. Each replica keeps one async connection on its event
loop that LISTENs and hands every head to the log tail, which reads the new
events back from the log in sequence order.

When the connection is lost (PostgreSQL restarts, the network drops) the
listener reconnects with exponential backoff, and on every (re)connect reads
the current head, so whatever committed while it was away is published at
once. The tail's own periodic check keeps working meanwhile: a lost
notification costs latency, never events.

The connection is also the server's probe of the database. Being connected
is not enough: a PostgreSQL that is stopped or frozen keeps its connections
open and answers nothing. So whenever a second passes without a notification
the listener reads the head (which also publishes whatever it missed), and a
probe unanswered within `--db-timeout-seconds` counts as the database lost:
the connection is closed and re-opened with backoff. Reachable or not goes to
`on_reachable`, and the server's health follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

import psycopg

from rigger_server.db_target import redact
from rigger_server.limits import Limits
from rigger_server.pg_stall import BoundedAsyncConnection
from rigger_server.pg_store import CHANNEL, connection_kwargs

log = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 5.0
# How often a quiet connection is probed.
PROBE_INTERVAL_SECONDS = 1.0


class PostgresListener:
    """This replica's LISTEN connection; announcing is the write transaction's NOTIFY."""

    def __init__(self, url: str, *, probe_timeout_seconds: float | None = None) -> None:
        self.url = url
        self.probe_timeout_seconds = probe_timeout_seconds or Limits().db_timeout_seconds
        self._task: asyncio.Task[None] | None = None

    def announce(self, sequence: int) -> None:
        """Nothing to do: the commit itself notified every replica."""

    async def start(
        self,
        on_seen: Callable[[int], None],
        on_reachable: Callable[[bool], None] = lambda reachable: None,
    ) -> None:
        """Listen in the background, from now until `close()`."""
        self._task = asyncio.create_task(
            self._listen(on_seen, on_reachable), name="rigger-pg-listener"
        )

    async def _listen(
        self, on_seen: Callable[[int], None], on_reachable: Callable[[bool], None]
    ) -> None:
        delay = FIRST_RETRY_SECONDS
        reachable = True
        while True:
            try:
                conn: BoundedAsyncConnection = await BoundedAsyncConnection.connect(
                    self.url, autocommit=True, **connection_kwargs(self.url)
                )
                conn.stall_seconds = self.probe_timeout_seconds
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    # Listening first, then the head: nothing committed in
                    # between goes unnoticed.
                    await _probe(conn, on_seen)
                    if not reachable:
                        log.info("listening to %s again", redact(self.url))
                    reachable = True
                    on_reachable(True)
                    delay = FIRST_RETRY_SECONDS
                    while True:
                        async for notice in conn.notifies(timeout=PROBE_INTERVAL_SECONDS):
                            with contextlib.suppress(ValueError):
                                on_seen(int(notice.payload))
                        # A quiet second: does the database still answer?
                        await _probe(conn, on_seen)
            except psycopg.Error as exc:
                if reachable:
                    log.warning(
                        "lost the database %s: %s; reconnecting",
                        redact(self.url),
                        str(exc).strip().splitlines()[0] if str(exc).strip() else exc,
                    )
                    reachable = False
                    on_reachable(False)
            # Jitter, so replicas that lost the database together do not all
            # come back in the same instant.
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, MAX_RETRY_SECONDS)

    async def close(self) -> None:
        """Stop listening and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


async def _probe(conn: psycopg.AsyncConnection[Any], on_seen: Callable[[int], None]) -> None:
    """Read the log's head (bounded by the connection) and pass it on."""
    cursor = await conn.execute("SELECT sequence FROM rigger.log_head")
    row = await cursor.fetchone()
    if row is not None:
        on_seen(int(row[0]))
