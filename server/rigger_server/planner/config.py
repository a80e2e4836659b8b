"""Which planner a server runs: `--planner offline|ollama`, `--ollama-url`.

The Ollama address comes from `--ollama-url`, else the OLLAMA_HOST
environment variable, else http://localhost:11434. Either may be written as
Ollama itself accepts it: `host`, `host:port`, `:port`, or a URL with
`http://` or `https://` (a missing port is 11434 without a scheme, else the
scheme's own).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import urllib.parse
from collections.abc import Mapping

PLANNERS = ("offline", "ollama")
DEFAULT_MODEL = "llama3.1"
DEFAULT_TIMEOUT = 300.0
DEFAULT_RETRIES = 2
DEFAULT_OLLAMA_URL = "http://localhost:11434"
OLLAMA_PORT = 11434


def ollama_url(value: str) -> str:
    """An Ollama address as written by a user, as a base URL (no trailing slash)."""
    text = value.strip().strip("\"'")
    scheme, separator, rest = text.partition("://")
    if not separator:
        scheme, rest, port = "http", text, OLLAMA_PORT
    elif scheme in ("http", "https"):
        port = 80 if scheme == "http" else 443
    else:
        raise ValueError(f"Ollama URL {value!r}: the scheme must be http or https")
    try:
        split = urllib.parse.urlsplit(f"{scheme}://{rest}")
        port = split.port or port
    except ValueError as exc:
        raise ValueError(f"Ollama URL {value!r}: {exc}") from None
    host = split.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}{split.path.rstrip('/')}"


@dataclasses.dataclass(frozen=True, slots=True)
class PlannerConfig:
    """The planner settings of a server."""

    planner: str = "offline"
    ollama_url: str = DEFAULT_OLLAMA_URL
    # The model used when a request names none.
    default_model: str = DEFAULT_MODEL
    # Longest a model may take for one step when the caller sets no deadline.
    timeout_seconds: float = DEFAULT_TIMEOUT
    # Invalid answers sent back to the model before giving up.
    retries: int = DEFAULT_RETRIES
    # Assignees a model may choose from; empty: any name the PRD gives.
    personas: tuple[str, ...] = ()

    @classmethod
    def from_flags(
        cls,
        planner: str = "offline",
        ollama_url_flag: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> PlannerConfig:
        """Settings from `--planner`, `--ollama-url` and the environment."""
        if planner not in PLANNERS:
            raise ValueError(f"planner {planner!r} is not one of {', '.join(PLANNERS)}")
        environ = os.environ if environ is None else environ
        written = ollama_url_flag or environ.get("OLLAMA_HOST", "").strip()
        url = ollama_url(written) if written else DEFAULT_OLLAMA_URL
        return cls(planner=planner, ollama_url=url)


def add_planner_flags(parser: argparse.ArgumentParser) -> None:
    """Add `--planner` and `--ollama-url` to `rig grpc`'s parser."""
    group = parser.add_argument_group("planner")
    group.add_argument(
        "--planner",
        choices=PLANNERS,
        default="offline",
        help="who plans GenerateTasksFromPRD and OrchestrateTask: the built-in offline "
        "planner, or models served by Ollama (default: offline)",
    )
    group.add_argument(
        "--ollama-url",
        type=_url_flag,
        default=None,
        metavar="URL",
        help=f"where Ollama listens (default: $OLLAMA_HOST, else {DEFAULT_OLLAMA_URL})",
    )


def config_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> PlannerConfig:
    """The planner settings from parsed `rig grpc` arguments."""
    return PlannerConfig.from_flags(args.planner, args.ollama_url, environ)


def _url_flag(text: str) -> str:
    try:
        return ollama_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
