"""rig mcp: serve Rigger's tasks to LLM agents over stdio MCP, as a client of `rig grpc`.

The MCP SDK is an optional extra (`pip install 'rigger[mcp]'`), so it is
imported only when `rig mcp` runs.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from rigger_server.console.connection import PLANNING_TIMEOUT_SECONDS, open_channel, options
from rigger_server.console.exitcodes import USAGE, ConsoleError
from rigger_server.console.runner import report

if TYPE_CHECKING:
    from rigger_server.console.tasks import Commands

# Every tool definition costs an agent tokens on every turn, so only these
# are offered unless --tools asks for more.
DEFAULT_TOOLS = (
    "list_tasks",
    "get_task",
    "add_task",
    "update_task",
    "next_task",
    "parse_prd",
    "generate_tasks",
    "orchestrate_task",
)
OTHER_TOOLS = ("delete_task", "list_events")


def add_parser(commands: Commands) -> None:
    """Register `rig mcp`."""
    mcp = commands.add_parser(
        "mcp",
        help="serve the tasks to LLM agents over stdio MCP (needs rigger[mcp])",
        description="An MCP server on stdin/stdout whose tools call the running `rig grpc`, "
        "so an agent's changes reach the sidecars. A failed call is a tool error that "
        "names the gRPC status and the server's message.",
        parents=[options(PLANNING_TIMEOUT_SECONDS)],
    )
    mcp.add_argument(
        "--tools",
        default="default",
        metavar="LIST",
        help=f"the tools to offer: 'default' ({', '.join(DEFAULT_TOOLS)}), 'all' (adds "
        f"{', '.join(OTHER_TOOLS)}), or a comma-separated list of names (default: default)",
    )
    mcp.set_defaults(run=_run)


def tool_names(text: str) -> tuple[str, ...]:
    """The tools --tools asks for, in the order given."""
    if text == "default":
        return DEFAULT_TOOLS
    if text == "all":
        return DEFAULT_TOOLS + OTHER_TOOLS
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in DEFAULT_TOOLS + OTHER_TOOLS]
    if unknown or not names:
        raise ConsoleError(
            USAGE,
            f"--tools: unknown tool {', '.join(unknown) or '(none given)'}; known: "
            f"{', '.join(DEFAULT_TOOLS + OTHER_TOOLS)}, or 'default' or 'all'",
        )
    return names


def _run(args: argparse.Namespace) -> int:
    try:
        names = tool_names(args.tools)
        # The optional extra: imported here, so every other command works without it.
        from rigger_server.console import mcp_tools
    except ConsoleError as err:
        return report(err.kind, err.message)
    except ImportError as exc:
        return report(USAGE, f"rig mcp needs the MCP SDK: pip install 'rigger[mcp]' ({exc})")

    async def serve() -> int:
        try:
            channel = open_channel(args)
        except ConsoleError as err:
            return report(err.kind, err.message)
        async with channel:
            await mcp_tools.build_server(channel, names, args.timeout).run_stdio_async()
        return 0

    try:
        return asyncio.run(serve())
    except KeyboardInterrupt:
        return 0
