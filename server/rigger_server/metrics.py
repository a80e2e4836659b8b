"""The server's Prometheus metrics: every series `/metrics` carries, and what feeds it.

The objects live here, named and labelled once; the rest of the server
calls the small functions below (service.py, calls.py, app.py) or passes
them as hooks to the domain (the writer's commit timing, the planner's
outcomes), which never imports prometheus_client.

Every label value comes from a fixed set written in code: method names from
the registered services' descriptors, status code names, stream kinds,
reasons, planner names and outcomes. Nothing a client sends becomes a label
value, so no request can create a series (`method_labels` maps every
unknown path to one "unknown" pair).

With `rig grpc --workers N` each worker writes its values to files in a
directory the supervisor made (prometheus_client's multiprocess mode,
PROMETHEUS_MULTIPROC_DIR), and the supervisor serves their sum on the one
metrics port: counters and histograms add up; each gauge says how it
combines (`multiprocess_mode`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
from collections.abc import Iterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    multiprocess,
)
from prometheus_client.registry import REGISTRY
from rigger.v1 import rigger_pb2

from rigger_server import reflection_v1
from rigger_server.events import Broadcaster, Turns
from rigger_server.limits import METRICS_SAMPLE_SECONDS

# The environment variable prometheus_client reads at import to pick
# multiprocess mode; the supervisor sets it for its workers.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

UNKNOWN = "unknown"

# No `_created` series beside every counter and histogram: Prometheus's text
# format has no use for them, and they double the series.
disable_created_metrics()  # type: ignore[no-untyped-call]

# The streams the service holds, by kind: SubscribeToTaskEvents (one event a
# message), SubscribeToTaskEventBatches, TaskEventStream (with updates).
STREAM_KINDS = ("plain", "batched", "bidirectional")
# Why the server ended a subscriber's stream.
ENDED_REASONS = ("lagging", "token_revoked")
PLANNERS = ("offline", "ollama")
PLANNER_OUTCOMES = (
    "ok",
    "invalid_output",
    "unavailable",
    "deadline_exceeded",
    "failed_precondition",
    "busy",
    "cancelled",
    "error",
)
CODES = tuple(code.name for code in grpc.StatusCode)

# Calls last from a millisecond (a read) to minutes (a model planning);
# streams end in the last bucket or +Inf.
CALL_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
# A group commit's COMMIT with its fsync: a fraction of a millisecond on a
# fast disk, tens of milliseconds on a slow one, seconds when it struggles.
COMMIT_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


def _services() -> dict[str, tuple[str, str]]:
    """Every method path the server answers, as its (service, method) labels."""
    known: dict[str, tuple[str, str]] = {}
    for service in (
        rigger_pb2.DESCRIPTOR.services_by_name["RiggerService"],
        health_pb2.DESCRIPTOR.services_by_name["Health"],
        reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
        reflection_v1.DESCRIPTOR.services_by_name["ServerReflection"],
    ):
        for method in service.methods:
            known[f"/{service.full_name}/{method.name}"] = (service.full_name, method.name)
    return known


METHODS = _services()

CALLS = Counter(
    "rigger_grpc_calls",
    "gRPC calls ended, by service, method and status code",
    ["service", "method", "code"],
)
CALL_SECONDS = Histogram(
    "rigger_grpc_call_duration_seconds",
    "How long gRPC calls took, from the handler's start to its end (streams: their lifetime)",
    ["service", "method"],
    buckets=CALL_BUCKETS,
)
STREAMS_OPEN = Gauge(
    "rigger_streams_open",
    "Subscriber streams open now, by kind",
    ["kind"],
    multiprocess_mode="livesum",
)
EVENTS_COMMITTED = Counter(
    "rigger_events_committed",
    "Events this server committed to the log (with --workers: all workers together)",
)
EVENTS_DELIVERED = Counter(
    "rigger_events_delivered",
    "Events sent to subscribers, by stream kind",
    ["kind"],
)
MESSAGES_DELIVERED = Counter(
    "rigger_messages_delivered",
    "Stream messages sent to subscribers, by stream kind (a batch message holds many events)",
    ["kind"],
)
SUBSCRIBERS_ENDED = Counter(
    "rigger_subscribers_ended",
    "Subscriber streams the server ended, by reason: lagging (queue overflow) or token_revoked",
    ["reason"],
)
COMMIT_SECONDS = Histogram(
    "rigger_commit_duration_seconds",
    "How long each group commit's COMMIT (with its fsync) took",
    buckets=COMMIT_BUCKETS,
)
LOG_HEAD = Gauge(
    "rigger_log_head_sequence",
    "Sequence of the newest event published to subscribers",
    multiprocess_mode="livemax",
)
DEEPEST_QUEUE = Gauge(
    "rigger_subscriber_queue_depth_max",
    "Events queued for the subscriber furthest behind (the deepest queue)",
    multiprocess_mode="livemax",
)
TURNS_WAITING = Gauge(
    "rigger_batch_turns_waiting",
    "Batched streams waiting in line for a turn to send (--batch-turns)",
    multiprocess_mode="livesum",
)
PLANNER_CALLS = Counter(
    "rigger_planner_calls",
    "Planner steps, by planner, step and outcome",
    ["planner", "step", "outcome"],
)
PLANNER_READY = Gauge(
    "rigger_planner_ready",
    "1 while the planner can plan (Ollama answers and has the default model), else 0",
    ["planner"],
    multiprocess_mode="livemin",
)


def method_labels(path: str) -> tuple[str, str]:
    """The (service, method) labels of a call's path; ("unknown", "unknown") if not served."""
    return METHODS.get(path, (UNKNOWN, UNKNOWN))


def code_label(code: grpc.StatusCode | None) -> str:
    """A status code's label: its name, OK for None."""
    return "OK" if code is None else code.name


# Each label set's child, looked up once: labels() takes a lock and builds a key.
_CALL_COUNTS: dict[tuple[str, str, str], Any] = {}
_CALL_TIMES: dict[tuple[str, str], Any] = {}


def call_ended(service: str, method: str, code: str, seconds: float | None) -> None:
    """Count one ended call; `seconds` None for a call no handler ran (unknown method)."""
    key = (service, method, code)
    counter = _CALL_COUNTS.get(key)
    if counter is None:
        counter = _CALL_COUNTS[key] = CALLS.labels(service, method, code)
    counter.inc()
    if seconds is not None:
        timer = _CALL_TIMES.get(key[:2])
        if timer is None:
            timer = _CALL_TIMES[key[:2]] = CALL_SECONDS.labels(service, method)
        timer.observe(seconds)


def commit_observed(seconds: float, events: int) -> None:
    """The writer's hook: one group committed `events` events in `seconds` (any thread)."""
    COMMIT_SECONDS.observe(seconds)
    if events:
        EVENTS_COMMITTED.inc(events)


def planner_step(planner: str, step: str, outcome: str) -> None:
    """The planner's hook: one step of `planner` ended with `outcome`."""
    PLANNER_CALLS.labels(
        planner if planner in PLANNERS else UNKNOWN,
        step,
        outcome if outcome in PLANNER_OUTCOMES else "error",
    ).inc()


# Known before anything happens, so each series is there (at 0) from the start.
for _reason in ENDED_REASONS:
    SUBSCRIBERS_ENDED.labels(_reason)


def subscriber_ended(reason: str) -> None:
    """A subscriber's stream was ended for `reason` (one of ENDED_REASONS)."""
    SUBSCRIBERS_ENDED.labels(reason).inc()


class StreamMeter:
    """One kind of stream's series, resolved once: a stream costs two calls per batch."""

    def __init__(self, kind: str) -> None:
        self.open = STREAMS_OPEN.labels(kind)
        self.events = EVENTS_DELIVERED.labels(kind)
        self.messages = MESSAGES_DELIVERED.labels(kind)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Count the stream as open while inside."""
        self.open.inc()
        try:
            yield
        finally:
            self.open.dec()

    def delivered(self, events: int, messages: int) -> None:
        """`events` events went out in `messages` messages."""
        self.events.inc(events)
        self.messages.inc(messages)


STREAMS = {kind: StreamMeter(kind) for kind in STREAM_KINDS}


def sample(broadcaster: Broadcaster, turns: Turns) -> None:
    """Set the gauges that describe the server's state now."""
    LOG_HEAD.set(broadcaster.head)
    DEEPEST_QUEUE.set(broadcaster.deepest_queue)
    TURNS_WAITING.set(turns.waiting)


async def sample_every(broadcaster: Broadcaster, turns: Turns) -> None:
    """Sample the state gauges every METRICS_SAMPLE_SECONDS, until cancelled.

    Sampled rather than set on every change: the deepest queue changes with
    every event, and in multiprocess mode a gauge is a file write.
    """
    while True:
        sample(broadcaster, turns)
        await asyncio.sleep(METRICS_SAMPLE_SECONDS)


def multiprocess_dir() -> pathlib.Path | None:
    """The directory of the workers' metric files when this process is one of them."""
    value = os.environ.get(MULTIPROC_ENV)
    return pathlib.Path(value) if value else None


def registry(directory: pathlib.Path | None) -> CollectorRegistry:
    """What /metrics serves: this process's metrics, or the sum of the workers' in `directory`."""
    if directory is None:
        return REGISTRY
    combined = CollectorRegistry()
    multiprocess.MultiProcessCollector(combined, path=str(directory))  # type: ignore[no-untyped-call]
    return combined


def worker_gone(directory: pathlib.Path, pid: int) -> None:
    """Drop a stopped worker's live gauges from the sum."""
    multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
