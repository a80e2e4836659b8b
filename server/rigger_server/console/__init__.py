"""The client commands of `rig`: the task commands, watch, mcp and completion.

Each is a client of a running `rig grpc` (the only writer), so whatever they
change reaches the sidecars like any other client's change.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rigger_server.console import completion, exitcodes, mcp_command, tasks, watch

if TYPE_CHECKING:
    from rigger_server.console.tasks import Commands


def add_commands(parser: argparse.ArgumentParser, commands: Commands) -> None:
    """Register the client commands on `rig` and its exit-status table in `rig --help`."""
    tasks.add_parsers(commands)
    watch.add_parser(commands)
    mcp_command.add_parser(commands)
    completion.add_parser(commands, parser)
    parser.epilog = f"{parser.epilog or ''}\n\n{exitcodes.help_text()}".strip()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
