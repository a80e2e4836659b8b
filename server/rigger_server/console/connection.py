"""Where the server is and how to reach it: the connection flags every client command shares."""

from __future__ import annotations

import argparse
import os
import pathlib

import shtab
from grpc import aio
from rigger_client.connect import DEFAULT_ADDRESS, connect
from rigger_client.sidecar import TOKEN_ENV

from rigger_server.console.exitcodes import USAGE, ConsoleError

ADDR_ENV = "RIGGER_ADDR"
# A task call's deadline unless --timeout says otherwise; planning calls
# (generate, do) may wait on a model for minutes, so theirs is longer.
TASK_TIMEOUT_SECONDS = 60.0
PLANNING_TIMEOUT_SECONDS = 900.0
# A token is one line; reading more of a file that is not one is pointless.
MAX_TOKEN_FILE_BYTES = 64 * 1024
# Longest token sent: half of gRPC's 16 KiB hard limit on a header value.
MAX_TOKEN_CHARS = 8 * 1024


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def options(timeout: float | None) -> argparse.ArgumentParser:
    """A parent parser with the connection flags; `timeout` None: no --timeout (streams)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument(
        "--addr",
        default=os.environ.get(ADDR_ENV) or DEFAULT_ADDRESS,
        metavar="HOST:PORT",
        help=f"the `rig grpc` to talk to (default: ${ADDR_ENV}, else {DEFAULT_ADDRESS})",
    )
    files = (
        ("--ca", "--ca-file", "PEM CA bundle that verifies the server; turns TLS on"),
        ("--cert", "--cert-file", "PEM client certificate, for mutual TLS (with --key)"),
        ("--key", "--key-file", "PEM client private key, for mutual TLS (with --cert)"),
        (
            "--token-file",
            None,
            f"file whose first line is the bearer token (default: ${TOKEN_ENV}, if set)",
        ),
    )
    for flag, alias, help_text in files:
        names = [flag] if alias is None else [flag, alias]
        action = group.add_argument(*names, metavar="FILE", help=help_text)
        action.complete = shtab.FILE  # type: ignore[attr-defined]
    if timeout is not None:
        group.add_argument(
            "--timeout",
            type=_seconds,
            default=timeout,
            metavar="SECONDS",
            help="give up on a call after this long (default: %(default)s)",
        )
    return parent


def open_channel(args: argparse.Namespace) -> aio.Channel:
    """A channel to --addr with the TLS files and token the flags name.

    Call it inside the event loop that will use the channel.
    """
    if (args.cert is None) != (args.key is None):
        raise ConsoleError(USAGE, "--cert and --key go together")
    try:
        return connect(
            args.addr,
            ca_file=args.ca,
            cert_file=args.cert,
            key_file=args.key,
            token=_token(args.token_file),
        )
    except OSError as exc:
        raise ConsoleError(USAGE, f"cannot read a TLS file: {exc}") from None


def _token(path: str | None) -> str | None:
    if path is None:
        token = os.environ.get(TOKEN_ENV, "").strip()
        return _checked(token, f"${TOKEN_ENV}") if token else None
    try:
        with pathlib.Path(path).open("rb") as file:
            head = file.read(MAX_TOKEN_FILE_BYTES)
        line = head.decode("utf-8").splitlines()[0] if head else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConsoleError(USAGE, f"cannot read --token-file: {exc}") from None
    if not line.strip():
        raise ConsoleError(USAGE, f"--token-file {path}: the first line holds no token")
    return _checked(line.strip(), f"--token-file {path}")


def _checked(token: str, where: str) -> str:
    # A header value gRPC will send: visible ASCII, and short enough for any
    # server's header limit. Anything else would fail inside gRPC's core.
    if len(token) > MAX_TOKEN_CHARS or not all("!" <= c <= "~" for c in token):
        raise ConsoleError(
            USAGE,
            f"{where}: not a bearer token (visible ASCII without spaces, "
            f"at most {MAX_TOKEN_CHARS} characters)",
        )
    return token
