"""Which database holds the log, and how the servers on it hear of each other's commits.

`rig grpc --db` names a SQLite file or a PostgreSQL URL. Each kind comes with
a store and a log notifier, chosen here and nowhere else:

- a SQLite file: `SqliteStore`; the servers on one file announce their
  commits to each other by datagram (`peers.Peers`);
- `postgresql://…`: `PostgresStore`; each write transaction NOTIFYs the new
  head, and every replica LISTENs for it (`pg_listener.PostgresListener`).

Either way the log tail also polls the store, so a lost announcement costs
latency, never events.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Protocol

from rigger_server.db_target import EXTRA, DatabaseUnusable, Target, is_url, redact
from rigger_server.domain import EventEncoder
from rigger_server.store import Store


class LogNotifier(Protocol):
    """How the servers on one log tell each other "the log holds events up to N"."""

    def announce(self, sequence: int) -> None:
        """This server committed events up to `sequence`."""
        ...

    async def start(
        self, on_seen: Callable[[int], None], on_reachable: Callable[[bool], None]
    ) -> None:
        """Pass every announced head to `on_seen`; say through `on_reachable` when the
        database is lost and found again. Raises OSError when it cannot start at all."""
        ...

    async def close(self) -> None:
        """Stop listening and release everything."""
        ...


def _require_postgres() -> None:
    """Fail with the install command when the PostgreSQL extra is missing."""
    for module in ("psycopg", "psycopg_pool"):
        try:
            __import__(module)
        except ImportError as exc:
            raise DatabaseUnusable(
                f"a postgresql:// database needs Rigger's PostgreSQL extra ({module} is "
                f"missing: {exc}): {EXTRA}"
            ) from None


def open_log(
    target: Target, encode: EventEncoder, *, timeout_seconds: float | None = None
) -> tuple[Store, LogNotifier]:
    """Open the store at `target` and the notifier its servers share.

    A SQLite file is created (or migrated) as needed; a PostgreSQL database
    must have been set up with `rig init --db URL`, and `timeout_seconds`
    bounds its statements and health probes (`--db-timeout-seconds`).
    Raises DatabaseUnusable.
    """
    if is_url(target):
        _require_postgres()
        from rigger_server.pg_listener import PostgresListener
        from rigger_server.pg_store import PostgresStore

        url = str(target)
        return (
            PostgresStore(url, encode, timeout_seconds=timeout_seconds),
            PostgresListener(url, probe_timeout_seconds=timeout_seconds),
        )
    from rigger_server.peers import Peers, peer_directory
    from rigger_server.sqlite_store import SqliteStore

    path = pathlib.Path(target)
    return SqliteStore(path, encode), Peers(peer_directory(path))


def initialise(target: Target, encode: EventEncoder) -> str:
    """Create or migrate the database at `target` (idempotent); say what was done."""
    if is_url(target):
        _require_postgres()
        from rigger_server.pg_store import migrate

        before, after = migrate(str(target))
        where = redact(str(target))
        if before == after:
            return f"Already initialized {where} (schema version {after})"
        if before == 0:
            return f"Initialized {where} (schema version {after})"
        return f"Migrated {where} from schema version {before} to {after}"
    from rigger_server.sqlite_store import SqliteStore

    SqliteStore(pathlib.Path(target), encode).close()
    return f"Initialized {target}"
