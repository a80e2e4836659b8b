"""rig watch: one line per task event, resuming across disconnects and, with a state file, restarts.

The watch is rigger_client's resuming watch on the batched stream. With
--state-file it stores the sequence of the last event it printed, only once
that line is out on stdout (atomically: a temporary file renamed over the
old one), and starts after that sequence when it runs again: nothing is
lost. The file is written when the stream pauses and at least every quarter
second, so the events printed in the last moments before the process is
killed are printed again after its restart (at least once); a watch stopped
with Ctrl-C or SIGTERM writes the file on its way out and repeats nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import sys
import time
from typing import TYPE_CHECKING, Any

import grpc
import shtab
from rigger.v1 import rigger_pb2 as pb
from rigger_client.backoff import Backoff
from rigger_client.eventline import format_event
from rigger_client.sidecar import add_filter_arguments
from rigger_client.signals import until_signalled
from rigger_client.statefile import StateFile, StateFileError
from rigger_client.watch import (
    HEAD_SEQUENCE_KEY,
    RETRYABLE,
    fell_back_message,
    retrying_message,
    watch_events,
)

from rigger_server.console import output
from rigger_server.console.connection import options
from rigger_server.console.exitcodes import USAGE, ConsoleError
from rigger_server.console.numbers import UINT64_MAX, up_to
from rigger_server.console.runner import client_command

if TYPE_CHECKING:
    from rigger.v1.rigger_pb2_grpc import RiggerServiceAsyncStub

    from rigger_server.console.tasks import Commands

# Writing the state file after every event would cap a watch at a few
# thousand events a second, so it is written once the stream pauses this
# long, and during a steady stream at least this often, and always on exit:
# after a crash, at most that last stretch of events is printed again.
SAVE_WHEN_QUIET_SECONDS = 0.05
SAVE_AT_LEAST_EVERY_SECONDS = 0.25


def add_parser(commands: Commands) -> None:
    """Register `rig watch`."""
    watch = commands.add_parser(
        "watch",
        help="print task events as they happen, resuming after disconnects",
        description="Print one line per task event (with --json, one JSON object per "
        "line), resuming without gap or duplicate when the connection drops. Runs until "
        "Ctrl-C or SIGTERM, which exit 0.",
        parents=[options(timeout=None)],
        epilog="With --state-file, a watch restarted with the same file continues after "
        "the last event it printed; an event printed just before the process was killed "
        "may be printed again (its sequence tells). One watch per state file.",
    )
    watch.add_argument("--json", action="store_true", help="print JSON, one event a line")
    add_filter_arguments(watch)
    watch.add_argument(
        "--after",
        type=up_to(UINT64_MAX),
        metavar="N",
        help="replay the stored events after sequence N first (0: the whole log); "
        "default: from now on",
    )
    state = watch.add_argument(
        "--state-file",
        type=pathlib.Path,
        metavar="FILE",
        help="keep the last printed sequence in FILE and, when FILE exists, continue after "
        "it (before --after). A new FILE starts at --after, else at the server's newest event",
    )
    state.complete = shtab.FILE  # type: ignore[attr-defined]
    watch.set_defaults(run=client_command(_watch))


class _State:
    """rigger_client's state file, its errors as usage errors naming --state-file."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self._file = StateFile(path)

    def load(self) -> int | None:
        """The sequence stored, or None when there is no file yet; refuses anything else."""
        try:
            stored = self._file.load()
            self._file.check_writable()
        except StateFileError as exc:
            raise ConsoleError(
                USAGE, f"--state-file {self.path} {exc}; remove it to start afresh"
            ) from None
        return stored

    def save(self, sequence: int) -> None:
        """Record `sequence`: the file holds the old number or the new one, never less."""
        try:
            self._file.save(sequence)
        except StateFileError as exc:
            raise ConsoleError(USAGE, f"--state-file {self.path}: {exc}") from None


async def _watch(stub: RiggerServiceAsyncStub, args: argparse.Namespace) -> int:
    request = pb.SubscribeToTaskEventsRequest(event_types=args.event_types)
    if args.assignee is not None:
        request.assignee_filter = args.assignee
    state = _State(args.state_file) if args.state_file is not None else None
    after = args.after
    if state is not None:
        stored = state.load()
        if stored is not None and after is not None:
            _status(f"--state-file {state.path} holds #{stored}: continuing after it, not --after")
        after = stored if stored is not None else after
        if after is None:
            after = await _head(stub)
        state.save(after)
    if after is not None:
        request.after_sequence = after

    ended = await until_signalled(_print_events(stub, request, args, state))
    return 0 if ended is None else ended


async def _print_events(
    stub: RiggerServiceAsyncStub,
    request: pb.SubscribeToTaskEventsRequest,
    args: argparse.Namespace,
    state: _State | None,
) -> int:
    """Print every event the watch yields; runs until cancelled or the watch fails."""

    def subscribed(after: int | None) -> None:
        _status(f"subscribed to {args.addr} ({'live' if after is None else f'after #{after}'})")

    def retrying(code: grpc.StatusCode, details: str, delay: float) -> None:
        _status(retrying_message(code, details, delay))

    def fell_back(details: str) -> None:
        _status(fell_back_message(details))

    events = watch_events(
        stub,
        request,
        on_subscribed=subscribed,
        on_retry=retrying,
        on_fallback=fell_back,
        batched=True,
    )
    unsaved: int | None = None  # printed, not yet in the state file
    saved_at = time.monotonic()
    reading = asyncio.ensure_future(anext(events))
    try:
        while True:
            quiet = SAVE_WHEN_QUIET_SECONDS if unsaved is not None else None
            done, _ = await asyncio.wait((reading,), timeout=quiet)
            if (
                state is not None
                and unsaved is not None
                and (not done or time.monotonic() - saved_at >= SAVE_AT_LEAST_EVERY_SECONDS)
            ):
                state.save(unsaved)
                unsaved, saved_at = None, time.monotonic()
            if not done:
                continue
            event = reading.result()
            reading = asyncio.ensure_future(anext(events))
            if args.json:
                output.json_line(event)
            else:
                sys.stdout.write(format_event(event) + "\n")
            sys.stdout.flush()
            # Only once the line is out: a crash in between repeats it, never loses it.
            unsaved = event.sequence if state is not None else None
    finally:
        reading.cancel()
        if state is not None and unsaved is not None:
            state.save(unsaved)


async def _head(stub: RiggerServiceAsyncStub) -> int:
    """The sequence of the server's newest event, waiting for the server as the watch would."""
    backoff = Backoff()
    while True:
        call = stub.SubscribeToTaskEventBatches(pb.SubscribeToTaskEventBatchesRequest())
        try:
            head = await announced_head(call)
            if head is None:
                raise ConsoleError(
                    USAGE, "the server announces no head sequence; start with --after N"
                )
            return head
        except grpc.aio.AioRpcError as err:
            if err.code() not in RETRYABLE:
                raise
            _status(f"cannot subscribe yet ({err.code().name}: {err.details()}); retrying")
        finally:
            call.cancel()
        await asyncio.sleep(backoff.next_delay())


async def announced_head(call: grpc.aio.UnaryStreamCall[Any, Any]) -> int | None:
    """The newest sequence a subscription's headers announce (None: none announced).

    A call the server refused raises its status as grpc.aio.AioRpcError.
    """
    head = dict(await call.initial_metadata() or ()).get(HEAD_SEQUENCE_KEY)
    if head is None and call.done():
        async for _ in call:  # raises the status the call ended with
            break
    try:
        return None if head is None else int(head)
    except ValueError:
        return None


def _status(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
