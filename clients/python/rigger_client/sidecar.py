"""rigger-sidecar: print every task event, one line each, resuming across server restarts.

stdout carries only event lines (see rigger_client.eventline), flushed one by
one; stderr carries status for humans, including a line with `subscribed`
each time a subscription is established. It reads the batched stream, or the
plain one from a server without it (rigger_client.watch). With --state-file it
records each printed event's sequence and resumes after it when restarted
(rigger_client.statefile). Ctrl-C or SIGTERM exits 0; a non-retryable error
exits 1; bad usage, or a state file it cannot use, exits 2. The flags are
shared with the Go and TypeScript sidecars.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import pathlib
import signal
import sys
from collections.abc import Sequence

import grpc
from rigger.v1 import rigger_pb2 as pb

from rigger_client.connect import DEFAULT_ADDRESS, connect, stub
from rigger_client.eventline import EVENT_TYPE_PREFIX, event_type_label, format_event, quote
from rigger_client.signals import until_signalled
from rigger_client.statefile import StateFile, StateFileError
from rigger_client.watch import fell_back_message, retrying_message, watch_events

PROG = "rigger-sidecar"
TOKEN_ENV = "RIGGER_TOKEN"
_INT32_MAX = 2**31 - 1


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """The --event-type and --assignee filters, shared by rigger-sidecar and `rig watch`."""
    parser.add_argument(
        "--event-type",
        dest="event_types",
        action="append",
        type=event_type,
        default=[],
        metavar="TYPE",
        help="only this event type: CREATED, TASK_EVENT_TYPE_CREATED or a number; "
        "repeat for several (default: all)",
    )
    parser.add_argument("--assignee", help="only events whose task has exactly this assignee")


def event_type(text: str) -> int:
    """A TaskEventType from `CREATED`, `TASK_EVENT_TYPE_CREATED` or its number, in any case."""
    value = text.strip()
    if value.isdigit():
        number = int(value)
        if number > _INT32_MAX:
            raise argparse.ArgumentTypeError(f"event type number {value} is out of range")
        # Numbers this build has no name for pass through: a newer server may know them.
        return number
    name = value.upper()
    if not name.startswith(EVENT_TYPE_PREFIX):
        name = EVENT_TYPE_PREFIX + name
    try:
        return pb.TaskEventType.Value(name)
    except ValueError:
        names = (v.name.removeprefix(EVENT_TYPE_PREFIX) for v in pb.TaskEventType.DESCRIPTOR.values)
        known = ", ".join(names)
        raise argparse.ArgumentTypeError(
            f"unknown event type {text!r}; expected one of {known} or a number"
        ) from None


def _sequence(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The sidecar's argument parser."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Print every Rigger task event as one line on stdout, resuming "
        "without gap or duplicate when the server restarts.",
    )
    parser.add_argument(
        "--addr", default=DEFAULT_ADDRESS, help=f"server address (default {DEFAULT_ADDRESS})"
    )
    add_filter_arguments(parser)
    parser.add_argument(
        "--after-sequence",
        type=_sequence,
        metavar="N",
        help="replay the stored events after sequence N first (0: the whole log); "
        "default: live events only",
    )
    parser.add_argument(
        "--state-file",
        metavar="PATH",
        help="record the sequence of each printed event in PATH (replaced atomically) and, "
        "when PATH exists at start, resume after it instead of --after-sequence; "
        "after a kill at most the last line printed is printed again (default: no state file)",
    )
    parser.add_argument("--ca-file", help="PEM CA bundle to verify the server; enables TLS")
    parser.add_argument("--cert-file", help="PEM client certificate for mutual TLS")
    parser.add_argument("--key-file", help="PEM client private key for mutual TLS")
    parser.add_argument(
        "--token-file",
        help=f"file whose first line is the bearer token (default: ${TOKEN_ENV}, if set)",
    )
    return parser


def _token(parser: argparse.ArgumentParser, path: str | None) -> str | None:
    if path is None:
        return os.environ.get(TOKEN_ENV, "").strip() or None
    try:
        lines = pathlib.Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        parser.error(f"cannot read --token-file: {exc}")
    token = lines[0].strip() if lines else ""
    if not token:
        parser.error(f"--token-file {path}: the first line holds no token")
    return token


def _state(path: str | None) -> tuple[StateFile | None, int | None]:
    """The state file and the sequence it holds; exits 2 when it cannot be used."""
    if path is None:
        return None, None
    state = StateFile(path)
    try:
        recorded = state.load()
        state.check_writable()
    except StateFileError as exc:
        _status(f"{PROG}: --state-file {path}: {exc}; fix it, or delete it to start afresh")
        sys.exit(2)
    return state, recorded


def _request(args: argparse.Namespace, recorded: int | None) -> pb.SubscribeToTaskEventsRequest:
    request = pb.SubscribeToTaskEventsRequest(event_types=args.event_types)
    if args.assignee is not None:
        request.assignee_filter = args.assignee
    after = recorded if recorded is not None else args.after_sequence
    if after is not None:
        request.after_sequence = after
    return request


def _describe(request: pb.SubscribeToTaskEventsRequest, after: int | None) -> str:
    parts = ["live" if after is None else f"resuming after #{after}"]
    if request.event_types:
        types = ",".join(event_type_label(t) for t in request.event_types)
        parts.append(f"types {types}")
    if request.HasField("assignee_filter"):
        parts.append(f"assignee {quote(request.assignee_filter)}")
    return "; ".join(parts)


def _status(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def _print_events(
    args: argparse.Namespace, token: str | None, state: StateFile | None, recorded: int | None
) -> int:
    request = _request(args, recorded)

    def subscribed(after: int | None) -> None:
        _status(f"subscribed to {args.addr} ({_describe(request, after)})")

    def retrying(code: grpc.StatusCode, details: str, delay: float) -> None:
        _status(retrying_message(code, details, delay))

    def fell_back(details: str) -> None:
        _status(fell_back_message(details))

    def record(sequence: int) -> None:
        if state is not None:
            state.save(sequence)

    try:
        channel = connect(
            args.addr,
            ca_file=args.ca_file,
            cert_file=args.cert_file,
            key_file=args.key_file,
            token=token,
        )
    except (OSError, ValueError) as exc:
        _status(f"{PROG}: {exc}")
        return 1
    async with channel:
        try:
            async for event in watch_events(
                stub(channel),
                request,
                on_subscribed=subscribed,
                on_retry=retrying,
                on_fallback=fell_back,
                # A live start records the head it resumes after, so a
                # restart before the first event misses nothing either.
                on_head=record,
            ):
                sys.stdout.write(format_event(event) + "\n")
                sys.stdout.flush()
                # Recorded only once printed: a kill in between repeats
                # this line after a restart, never loses it.
                record(event.sequence)
        except grpc.aio.AioRpcError as err:
            _status(f"{PROG}: {err.code().name}: {err.details()}")
            return 1
        except StateFileError as exc:
            _status(f"{PROG}: --state-file {args.state_file}: {exc}")
            return 1
        except BrokenPipeError:
            # Whoever read stdout is gone. Point stdout at /dev/null so the
            # interpreter's final flush does not complain a second time.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            _status(f"{PROG}: stdout closed")
            return 1
    return 0


async def _run(
    args: argparse.Namespace, token: str | None, state: StateFile | None, recorded: int | None
) -> int:
    ended = await until_signalled(_print_events(args, token, state, recorded))
    if ended is not None:
        return ended
    _status("stopped")
    return 0


def _utf8_stdio() -> None:
    # Titles are arbitrary Unicode and the line format is the same bytes in
    # every language, whatever the locale says.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(encoding="utf-8", errors="strict", newline="\n")
    if isinstance(sys.stderr, io.TextIOWrapper):
        sys.stderr.reconfigure(encoding="utf-8", errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sidecar until interrupted; returns the exit status."""
    # Until the event loop installs its own handlers, let SIGTERM stop a
    # starting sidecar the way Ctrl-C does: cleanly, with status 0.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        _utf8_stdio()
        parser = build_parser()
        args = parser.parse_args(argv)
        token = _token(parser, args.token_file)
        state, recorded = _state(args.state_file)
        return asyncio.run(_run(args, token, state, recorded))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
