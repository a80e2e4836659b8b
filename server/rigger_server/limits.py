"""The server's limits, each written once, here.

Every field of `Limits` has a `rig grpc` flag (cli.LIMIT_FLAGS names it),
except those in WITHOUT_FLAG: documented constants kept in `Limits` so that
tests can lower them. The module's constants have no flag either; each one's
comment says why.
"""

from __future__ import annotations

import dataclasses

KIB = 1024
MIB = 1024 * KIB

# File descriptors kept back from connections for the server's own files
# (database, WAL, lock, peers, PRD reads, logs): connections beyond the
# open-file limit minus this are refused at once instead of starving them.
RESERVED_FILES = 128
# Ceiling for raising the soft open-file limit when the hard one is unlimited.
MAX_OPEN_FILES = 1 << 20

# Largest SubscribeToTaskEventBatches message, a quarter of the 4 MiB every
# client accepts by default; an event larger than this goes alone. The figure
# is part of the contract's comment on the method.
MAX_BATCH_MESSAGE_BYTES = 1 * MIB

# A write commits only while at least this long is left before its caller's
# deadline (guard.py): what follows the commit (publishing its events,
# building and sending the answer) must fit in it, or the caller would hear
# DEADLINE_EXCEEDED about a write that was made. A generation adds
# ANSWER_SECONDS_PER_TASK for each task it answers with (building and sending
# a task took ~10 us on the 2-core bench machine; twice that, for a loaded
# one). No flags: documented constants.
COMMIT_MARGIN_SECONDS = 0.05
ANSWER_SECONDS_PER_TASK = 20e-6


# A PostgreSQL connection that has not answered within --db-timeout-seconds
# plus this is closed: the server-side timeouts had their chance to fire, so
# the database is not answering at all (stopped, frozen, cut off without a
# reset). No flag: a documented constant.
DB_STALL_SLACK_SECONDS = 2.0

# Seconds a SubscribeToTaskEventBatches stream may hold one of the turns
# (--batch-turns) before it goes to the next in line. A stream holds its turn
# while its batch is sent; a send to a client that does not read waits on the
# client's HTTP/2 window forever, and would keep the turn. A stream that reads
# gives its turn back within a pass or two of the event loop: about a
# millisecond on average at 1000 streams on the bench (a stream's whole round,
# waiting in line included, has p50 ~120 ms and p99 147 ms there). A quarter
# second is far above that, so streams that read keep their turns as before;
# and it bounds what stalled streams cost the others: H of them stalling at
# once hold the turns for about H / turns x 0.25 s, once (a stream whose turn
# was taken back asks again only after its send completes). Taking back a
# turn early costs little: the stream still sends, it only stops keeping others
# waiting. No flag: a documented constant.
BATCH_TURN_LEASE_SECONDS = 0.25

# What every client accepts in one message by default (gRPC's receive limit).
CLIENT_MESSAGE_BYTES = 4 * MIB
# Largest event the log stores (its encoded TaskEvent). Sent alone, an event
# is one message of its own bytes (a batch adds at most 6 bytes of framing),
# so anything up to CLIENT_MESSAGE_BYTES would arrive; the 64 KiB kept back
# leave room for fields a later contract adds to every event. A write that
# would store a larger event fails with FAILED_PRECONDITION and writes
# nothing. No flag: a documented constant (clients would have to raise their
# limit with it).
MAX_EVENT_BYTES = CLIENT_MESSAGE_BYTES - 64 * KIB

# Longest status message the server sends, in bytes of the percent-encoded
# grpc-message trailer (an "é" is 6 of them). gRPC clients refuse trailers
# over 8 KiB by default, some at random between 8 and 16 KiB, with
# RESOURCE_EXHAUSTED instead of the real status; half of it leaves room for
# the other trailers. Longer messages are cut. No flag: a documented constant.
MAX_STATUS_MESSAGE_BYTES = 4 * KIB

# How many characters of a value from a request, a PRD or a model an error
# message quotes (errors.quoted). No flag: a documented constant.
QUOTED_CHARS = 80

# The most context files a planned task or subtask may name, and dependencies
# a planned task may have. A planner's result beyond them is refused (a
# model's answer is sent back to it). No flag: documented constants; at their
# bounds a task's paths and ids take at most 20 * 16 KiB and 1000 * 38 bytes
# of every event about it.
MAX_PLANNED_CONTEXT_FILES = 20
MAX_PLANNED_DEPENDENCIES = 1000
# The most options a multiple-choice comprehension test may offer.
MAX_TEST_OPTIONS = 6

# Largest reply the Ollama planner reads from /api/tags or /api/version, and
# the most of an error body it reads (it quotes 200 characters of it). No
# flag: documented constants; a model's answer has its own
# (Limits.max_model_answer_bytes).
MAX_OLLAMA_LISTING_BYTES = 1 * MIB
MAX_OLLAMA_ERROR_BYTES = 64 * KIB

# With --planner ollama the server asks Ollama, from its start on, whether it
# answers and has the default model (planner/readiness.py): each probe may
# take PLANNER_PROBE_SECONDS; while the answer is no, the next comes after
# PLANNER_PROBE_FIRST_SECONDS, doubling up to PLANNER_PROBE_LONGEST_SECONDS,
# and every PLANNER_PROBE_LONGEST_SECONDS once it is yes. No flags:
# documented constants.
PLANNER_PROBE_SECONDS = 5.0
PLANNER_PROBE_FIRST_SECONDS = 1.0
PLANNER_PROBE_LONGEST_SECONDS = 30.0

# The metrics endpoint (`--metrics-port`, metrics_http.py) serves at most
# METRICS_MAX_CONNECTIONS connections at once and closes any other at once;
# a connection gets METRICS_CONNECTION_SECONDS from accept to its answer
# sent, so clients that send slowly (or not at all) cannot hold the slots for
# longer. A scrape takes milliseconds. The state gauges (log head, deepest
# queue, turns waiting) are sampled every METRICS_SAMPLE_SECONDS. No flags:
# documented constants.
METRICS_MAX_CONNECTIONS = 16
METRICS_CONNECTION_SECONDS = 10.0
METRICS_SAMPLE_SECONDS = 1.0


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one client can make the server hold or do."""

    # Largest request message gRPC accepts; larger ones get RESOURCE_EXHAUSTED.
    max_message_bytes: int = 4 * MIB
    # Longest task title, in characters (INVALID_ARGUMENT beyond it).
    max_title_chars: int = 128 * KIB
    # Longest other string field of a request (assignee, ids, filters, due date,
    # PRD path, model names), in characters.
    max_field_chars: int = 4 * KIB
    # Most entries in a subscription's event_types filter (there are 8 types;
    # repeats are allowed up to this). No flag: a documented constant.
    max_event_types: int = 64
    # Most subscriber streams open at once (RESOURCE_EXHAUSTED beyond it).
    max_subscribers: int = 10_000
    # Most calls (HTTP/2 streams) open at once on one connection; the server
    # refuses the streams beyond it (each held ~21 KiB even before its request
    # arrived: a million could be opened on one connection). gRPC clients wait
    # for a free slot rather than fail, and a subscription holds its slot for
    # as long as it is open, so this must exceed what one connection
    # legitimately multiplexes: a sidecar holds one stream; the bench holds at
    # most ~80 per connection (10 000 over 128), the reconnect-storm test 375.
    max_streams_per_connection: int = 1000
    # Most calls other than event streams the server holds at once, all
    # connections together: the server takes at most --max-subscribers plus
    # this many calls of any kind (`max_calls`), and answers the rest
    # RESOURCE_EXHAUSTED at once. Without it, connections times streams per
    # connection is the only bound, and a call held without its request costs
    # ~21 KiB (10 connections of 1000 such calls took the server from 45 to
    # 255 MiB). A unary call is in flight for milliseconds: 1000 at once is
    # far beyond what the 2-core bench machine serves.
    max_unary_calls: int = 1000

    # Most bytes of events queued for one subscriber (beside --buffer, the
    # most events) before it is ended as lagging with RESOURCE_EXHAUSTED. The
    # events' bytes are shared by every subscriber that queued them, but a
    # subscriber that stops reading keeps its own alive. 64 MiB is what 1000
    # events (--buffer) of 64 KiB make: a subscriber that reads never comes
    # near it (ordinary events are under 1 KiB; it queues only what arrives
    # while one message of at most 1 MiB is sent); one that stalls pins at most
    # that much, plus the batch it was sending. An event larger than the
    # budget is still queued when the queue is empty.
    buffer_bytes: int = 64 * MIB
    # Largest PRD file ParsePRD reads.
    max_prd_bytes: int = 1 * MIB
    # Most tasks one GenerateTasksFromPRD may create (RESOURCE_EXHAUSTED
    # beyond it). Its one transaction holds the writer, and every other write
    # waits: replacing 10 000 tasks held it 0.6-0.8 s on the 2-core bench
    # machine, 30 000 held it 2.7-3.8 s.
    max_generated_tasks: int = 10_000
    # Most subtasks one task may have (RESOURCE_EXHAUSTED beyond it). Each
    # costs ~38 bytes in every event about the parent: 10000 make ~380 KB.
    max_subtasks: int = 10_000
    # PostgreSQL: the longest one statement may run, waiting for a row lock
    # included (statement_timeout, lock_timeout: then UNAVAILABLE), and the
    # longest a health probe may go unanswered (then NOT_SERVING).
    db_timeout_seconds: float = 5.0
    # Largest reply the Ollama planner reads for one model answer (the HTTP
    # body of /api/chat, as decoded); a larger one is refused with
    # FAILED_PRECONDITION as soon as that much has arrived.
    max_model_answer_bytes: int = 4 * MIB
    # Most model calls (planner steps waiting on Ollama) in flight at once;
    # one model may hold at most half of them (at least one), so a model that
    # hangs leaves the other half to the others. Beyond either,
    # RESOURCE_EXHAUSTED at once. The HTTP client's pool is this size: a
    # call never waits for a connection.
    max_model_calls: int = 32
    # Seconds between keepalive pings the server sends on an idle connection,
    # so a vanished sidecar is noticed and its subscription released.
    keepalive_seconds: float = 60.0
    # Seconds to wait for a ping's answer before closing the connection.
    keepalive_timeout_seconds: float = 20.0
    # Shortest interval at which the server accepts client pings; the client
    # helpers ping every 30 s. No flag: a documented constant.
    min_client_ping_seconds: float = 10.0
    # Seconds a new connection gets to complete its TLS and HTTP/2 handshake;
    # an idle TCP connection that never speaks is closed after this.
    handshake_timeout_seconds: float = 10.0
    # Seconds a connection may stay open with no call in flight before the
    # server closes it (GOAWAY; clients reconnect on their next call). A
    # sidecar's open stream is a call in flight. No flag: a documented constant.
    max_idle_connection_seconds: float = 300.0

    @property
    def max_calls(self) -> int:
        """Most calls of any kind the server holds at once: every stream, and the unary calls."""
        return self.max_subscribers + self.max_unary_calls


# The fields of `Limits` that no `rig grpc` flag sets (see each one's comment).
WITHOUT_FLAG = frozenset(
    {"max_event_types", "min_client_ping_seconds", "max_idle_connection_seconds"}
)
