"""rig completion: bash and zsh completion scripts, generated from rig's own parser."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

import shtab

if TYPE_CHECKING:
    from rigger_server.console.tasks import Commands

SHELLS = ("bash", "zsh")


def add_parser(commands: Commands, root: argparse.ArgumentParser) -> None:
    """Register `rig completion`, which describes `root` with every command registered."""
    completion = commands.add_parser(
        "completion",
        help="print a bash or zsh completion script",
        description="Print the completion script for SHELL, generated from rig's parser.",
        epilog="bash: `source <(rig completion bash)` in ~/.bashrc. zsh: "
        "`rig completion zsh > ~/.zfunc/_rig` with ~/.zfunc on $fpath before compinit.",
    )
    completion.add_argument("shell", choices=SHELLS, metavar="SHELL", help=" or ".join(SHELLS))

    def run(args: argparse.Namespace) -> int:
        sys.stdout.write(shtab.complete(root, shell=args.shell))
        return 0

    completion.set_defaults(run=run)
