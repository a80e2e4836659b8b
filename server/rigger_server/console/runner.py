"""Running one client command: a channel for its life, and its failures as exit status."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import grpc
from rigger_client.connect import stub

from rigger_server.console import exitcodes
from rigger_server.console.connection import ADDR_ENV, open_channel
from rigger_server.console.exitcodes import ConsoleError, ExitClass
from rigger_server.console.output import utf8_stdio

if TYPE_CHECKING:
    from rigger.v1.rigger_pb2_grpc import RiggerServiceAsyncStub

Body = Callable[["RiggerServiceAsyncStub", argparse.Namespace], Awaitable[int]]


def client_command(body: Body) -> Callable[[argparse.Namespace], int]:
    """`body` as a subcommand's `run`: given a stub to --addr, it returns the exit status."""

    def run(args: argparse.Namespace) -> int:
        utf8_stdio()
        try:
            return asyncio.run(_with_channel(body, args))
        except grpc.aio.AioRpcError as err:
            return report(exitcodes.for_status(err.code()), _server_message(err, args))
        except ConsoleError as err:
            return report(err.kind, err.message)
        except KeyboardInterrupt:
            return exitcodes.INTERRUPTED.code
        except BrokenPipeError:
            return stdout_closed()

    return run


async def _with_channel(body: Body, args: argparse.Namespace) -> int:
    async with open_channel(args) as channel:
        status = await body(stub(channel), args)
    # Inside the caller's try: a reader that went away is reported here, not
    # by the interpreter's last flush.
    sys.stdout.flush()
    return status


def report(kind: ExitClass, message: str) -> int:
    """Say what went wrong on stderr; the exit status of `kind`."""
    print(f"rig: {message}", file=sys.stderr, flush=True)
    return kind.code


def stdout_closed() -> int:
    """The exit status when stdout's reader went away, with nothing more written to it."""
    # Point stdout at /dev/null so the interpreter's final flush stays quiet.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return exitcodes.OUTPUT_CLOSED.code


def _server_message(err: grpc.aio.AioRpcError, args: argparse.Namespace) -> str:
    message = f"{err.code().name}: {err.details()}"
    if err.code() == grpc.StatusCode.UNAVAILABLE:
        message += f"\nIs `rig grpc` serving at {args.addr}? (--addr, or ${ADDR_ENV})"
    return message
