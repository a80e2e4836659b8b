"""The `rig` command: `rig init`, `rig grpc`, and the client commands (console/)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import json
import logging
import os
import pathlib
import sys
from collections.abc import Callable
from typing import Any

from rigger_server import __version__, console, database, db_target, logs, metrics, wire
from rigger_server.app import (
    PORT_ATTEMPTS,
    CertificateError,
    PortInUse,
    RiggerServer,
    ServerConfig,
    TlsFiles,
    raise_open_file_limit,
)
from rigger_server.auth import TokenFileError
from rigger_server.db_target import DatabaseUnusable
from rigger_server.errors import StoreFault
from rigger_server.limits import Limits
from rigger_server.metrics_http import DEFAULT_HOST, MetricsBindError, MetricsServer
from rigger_server.planner import PlannerConfig, add_planner_flags, config_from_args
from rigger_server.workers import Supervisor

RIGGER_DIR = ".rigger"
DB_NAME = "tasks.db"

# What stops a start before it serves, each answered by _start_failed with a
# message that says what to do, never a traceback.
START_FAILURES = (
    TokenFileError,
    CertificateError,
    PortInUse,
    DatabaseUnusable,
    StoreFault,
    MetricsBindError,
)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def _default(name: str) -> Any:
    """ServerConfig's default for a field: where every `rig grpc` default is written."""
    [field] = [f for f in dataclasses.fields(ServerConfig) if f.name == name]
    return field.default


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, got {value}")
    return value


# Each limits.Limits field a flag sets: (flag, field, type, help).
LIMIT_FLAGS: list[tuple[str, str, Callable[[str], Any], str]] = [
    (
        "--max-message-bytes",
        "max_message_bytes",
        _positive,
        "largest request message; beyond: RESOURCE_EXHAUSTED",
    ),
    ("--max-title-length", "max_title_chars", _positive, "longest task title in characters"),
    (
        "--max-field-length",
        "max_field_chars",
        _positive,
        "longest other string field in characters",
    ),
    ("--max-subscribers", "max_subscribers", _positive, "most event streams open at once"),
    (
        "--max-unary-calls",
        "max_unary_calls",
        _positive,
        "most calls other than event streams held at once, all connections together: the "
        "server takes at most --max-subscribers plus this many calls, and answers the rest "
        "RESOURCE_EXHAUSTED at once",
    ),
    (
        "--max-streams-per-connection",
        "max_streams_per_connection",
        _positive,
        "most calls open at once on one connection; the server refuses streams beyond it "
        "and gRPC clients wait for a free slot, so it must exceed what one connection "
        "multiplexes: a sidecar holds 1 stream, the bench about 80, a reconnect storm of "
        "3000 over 8 connections 375",
    ),
    (
        "--buffer-bytes",
        "buffer_bytes",
        _positive,
        "bytes of events queued per subscriber (beside --buffer, the count) before a "
        "lagging one is ended with RESOURCE_EXHAUSTED",
    ),
    ("--max-prd-bytes", "max_prd_bytes", _positive, "largest PRD file ParsePRD reads"),
    ("--max-subtasks", "max_subtasks", _positive, "most subtasks one task may have"),
    (
        "--max-generated-tasks",
        "max_generated_tasks",
        _positive,
        "most tasks one GenerateTasksFromPRD may create; its transaction holds every other "
        "write meanwhile",
    ),
    (
        "--max-model-answer-bytes",
        "max_model_answer_bytes",
        _positive,
        "largest answer read from a model (Ollama); beyond: FAILED_PRECONDITION",
    ),
    (
        "--max-model-calls",
        "max_model_calls",
        _positive,
        "most model calls (Ollama) in flight, at most half of them to one model; "
        "beyond: RESOURCE_EXHAUSTED at once",
    ),
    (
        "--keepalive-seconds",
        "keepalive_seconds",
        _seconds,
        "ping idle connections this often to release vanished sidecars",
    ),
    (
        "--keepalive-timeout-seconds",
        "keepalive_timeout_seconds",
        _seconds,
        "close a connection whose ping goes unanswered this long",
    ),
    (
        "--db-timeout-seconds",
        "db_timeout_seconds",
        _seconds,
        "PostgreSQL: longest one statement may run, a wait for a lock included (then "
        "UNAVAILABLE), and longest a health probe may go unanswered (then NOT_SERVING)",
    ),
    (
        "--handshake-timeout-seconds",
        "handshake_timeout_seconds",
        _seconds,
        "close a new connection that has not completed its handshake by then",
    ),
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for `rig` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="rig",
        description="Rigger: a task service that broadcasts every task change to sidecars.",
        epilog="Start with `rig init` in your project directory, then `rig grpc`.",
    )
    parser.add_argument("--version", action="version", version=f"rig {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser(
        "init",
        help="create .rigger/ and its task database in the current directory",
        description="Create .rigger/ with tasks.db in the current directory, or set up "
        "the PostgreSQL database --db names. Safe to run again: existing data is kept.",
    )
    init.add_argument(
        "--db",
        metavar="URL",
        help="a postgresql:// URL: create (or migrate) Rigger's tables there instead",
    )
    init.set_defaults(run=_init)

    grpc_cmd = commands.add_parser(
        "grpc",
        help=f"serve the rigger.v1 gRPC API (default {_default('host')}:{_default('port')})",
        description="Serve rigger.v1.RiggerService with server reflection and "
        "grpc.health.v1. Stops gracefully on Ctrl-C or SIGTERM.",
    )
    grpc_cmd.add_argument(
        "--host",
        default=_default("host"),
        help="interface to bind (default: %(default)s; localhost binds both [::1] and 127.0.0.1)",
    )
    grpc_cmd.add_argument(
        "--port",
        type=_port,
        default=_default("port"),
        help="port to bind; 0 picks a free one (default: %(default)s)",
    )
    grpc_cmd.add_argument(
        "--db",
        metavar="PATH|URL",
        help=f"SQLite database file (default: {RIGGER_DIR}/{DB_NAME} in the current "
        "directory), or a postgresql:// URL shared by any number of replicas",
    )
    grpc_cmd.add_argument(
        "--buffer",
        type=_positive,
        default=_default("buffer"),
        help="events queued per subscriber before a lagging one is ended "
        "with RESOURCE_EXHAUSTED (default: %(default)s)",
    )
    grpc_cmd.add_argument(
        "--batch-turns",
        type=_positive,
        default=_default("batch_turns"),
        metavar="N",
        help="SubscribeToTaskEventBatches streams that send at once; the others wait their "
        "turn and take everything queued meanwhile. Fewer: more writes and events per "
        "second under load, larger batches, later delivery at light load (default: %(default)s)",
    )
    grpc_cmd.add_argument(
        "--workers",
        type=_positive,
        default=1,
        metavar="N",
        help="server processes sharing the port (SO_REUSEPORT); connections spread over "
        "them and each publishes every event, for many subscribers on many cores "
        "(default: 1)",
    )
    grpc_cmd.add_argument(
        "--ready-file",
        type=pathlib.Path,
        metavar="PATH",
        help="once serving, write the bound addresses to PATH as JSON "
        '({"addresses": [...], "port": N, "pid": N}), for scripts and test harnesses',
    )
    grpc_cmd.add_argument(
        "--grace",
        type=float,
        default=_default("grace_seconds"),
        help="seconds in-flight calls get to finish on shutdown (default: %(default)s)",
    )
    security = grpc_cmd.add_argument_group("security")
    security.add_argument(
        "--tls-cert",
        type=pathlib.Path,
        metavar="FILE",
        help="PEM certificate: serve TLS. SIGHUP re-reads it with --tls-key and "
        "--tls-client-ca; new connections get the new one",
    )
    security.add_argument(
        "--tls-key", type=pathlib.Path, metavar="FILE", help="PEM private key for --tls-cert"
    )
    security.add_argument(
        "--tls-client-ca",
        type=pathlib.Path,
        metavar="FILE",
        help="PEM CA: require client certificates signed by it (mTLS)",
    )
    security.add_argument(
        "--auth-token-file",
        type=pathlib.Path,
        metavar="FILE",
        help="require `authorization: Bearer <token>` on every call; one token per line, "
        "re-read on SIGHUP (so are the --tls-* files)",
    )
    security.add_argument(
        "--public-health",
        action="store_true",
        help="with --auth-token-file: leave health checks and reflection open",
    )
    defaults = Limits()
    limits = grpc_cmd.add_argument_group("limits")
    for flag, field, kind, help_text in LIMIT_FLAGS:
        limits.add_argument(
            flag,
            dest=field,
            type=kind,
            metavar="SECONDS" if kind is _seconds else "N",
            default=getattr(defaults, field),
            help=f"{help_text} (default: %(default)s)",
        )
    add_planner_flags(grpc_cmd)
    observing = grpc_cmd.add_argument_group("metrics and logs")
    observing.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        metavar="N",
        help="serve Prometheus metrics at http://HOST:N/metrics (0 picks a free port, "
        "written to --ready-file as metrics_port); with --auth-token-file it asks for "
        "the same token; with --workers one port serves the sum of every worker's "
        "(default: no metrics endpoint)",
    )
    observing.add_argument(
        "--metrics-host",
        default=DEFAULT_HOST,
        metavar="HOST",
        help="interface the metrics endpoint binds; anything but loopback shows the "
        "metrics to whoever reaches it, so use --auth-token-file then "
        f"(default: {DEFAULT_HOST})",
    )
    observing.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default="text",
        help="text lines, or one JSON object per line for every log record, with a "
        "record for every call (method, code, duration_ms, peer, committed sequences) "
        "(default: text)",
    )
    grpc_cmd.set_defaults(run=_grpc)
    console.add_commands(parser, commands)
    return parser


def _init(args: argparse.Namespace) -> int:
    if args.db is not None:
        if not db_target.is_url(args.db):
            print(
                f"error: --db: expected a postgresql:// URL, got {args.db!r}",
                file=sys.stderr,
            )
            return 2
        try:
            print(database.initialise(args.db, wire.encode_event))
        except DatabaseUnusable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    directory = pathlib.Path.cwd() / RIGGER_DIR
    existed = directory.is_dir()
    directory.mkdir(exist_ok=True)
    try:
        database.initialise(directory / DB_NAME, wire.encode_event)
    except StoreFault as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verb = "Already initialized" if existed else "Initialized"
    print(f"{verb} {directory} (database: {directory / DB_NAME})")
    return 0


def _grpc(args: argparse.Namespace) -> int:

    root = pathlib.Path.cwd()
    db_path: db_target.Target
    if args.db is not None and db_target.is_url(args.db):
        db_path = args.db
    elif args.db is None:
        directory = root / RIGGER_DIR
        if not directory.is_dir():
            print(
                f"error: no {RIGGER_DIR}/ directory in {root}\n"
                f"Run `rig init` here first, or pass --db PATH.",
                file=sys.stderr,
            )
            return 2
        db_path = directory / DB_NAME
    else:
        db_path = pathlib.Path(args.db).resolve()
        if not db_path.parent.is_dir():
            print(f"error: --db: directory {db_path.parent} does not exist", file=sys.stderr)
            return 2
    problem = _check_security_flags(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        planner = config_from_args(args)
    except ValueError as exc:  # OLLAMA_HOST that is not an address
        print(f"error: OLLAMA_HOST: {exc}", file=sys.stderr)
        return 2
    # Before anything opens a file; worker processes inherit it.
    logging.getLogger(__name__).info("open-file limit: %d", raise_open_file_limit())
    config = server_config(args, db_path, root, planner)
    _warn_exposed_metrics(config)

    if args.workers > 1:
        return _serve_workers(config, args.workers, args.ready_file)

    async def serve() -> int:
        exposed: MetricsServer | None = None
        try:
            server = RiggerServer(config)  # reads the token file and the TLS files
            server.handle_signals()
            if config.metrics_port is not None:
                exposed = MetricsServer(
                    config.metrics_host, config.metrics_port, metrics.registry(None), server.auth
                )
            await server.start()
        except START_FAILURES as exc:
            if exposed is not None:
                exposed.close()
            return _start_failed(exc, config)
        try:
            if not server.stop_requested:
                _print_banner(config, server.addresses, workers=1, metrics_server=exposed)
                if args.ready_file is not None:
                    write_ready_file(
                        args.ready_file,
                        server.addresses,
                        server.port,
                        exposed.port if exposed else None,
                    )
            await server.wait()
        finally:
            if exposed is not None:
                exposed.close()
        print("Rigger gRPC Server stopped.", flush=True)
        return 0

    return asyncio.run(serve())


def server_config(
    args: argparse.Namespace, db_path: db_target.Target, root: pathlib.Path, planner: PlannerConfig
) -> ServerConfig:
    """What the `rig grpc` flags in `args` ask for, serving `db_path` from `root`."""
    return ServerConfig(
        db_path=db_path,
        project_root=root,
        host=args.host,
        port=args.port,
        buffer=args.buffer,
        batch_turns=args.batch_turns,
        grace_seconds=args.grace,
        limits=Limits(**{field: getattr(args, field) for _, field, _, _ in LIMIT_FLAGS}),
        tls=TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None,
        auth_token_file=args.auth_token_file,
        public_health=args.public_health,
        planner=planner,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        log_format=args.log_format,
    )


def _warn_exposed_metrics(config: ServerConfig) -> None:
    if config.metrics_port is None or config.auth_token_file is not None:
        return
    host = config.metrics_host
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        logging.getLogger(__name__).warning(
            "--metrics-host %s: the metrics are open to anyone who reaches %s:%s; bind "
            "127.0.0.1 (the default), or pass --auth-token-file to ask for a token",
            host,
            host,
            config.metrics_port,
        )


def _serve_workers(config: ServerConfig, count: int, ready_file: pathlib.Path | None) -> int:
    supervisor = Supervisor(config, count)
    try:
        started = supervisor.start()
    except START_FAILURES as exc:
        return _start_failed(exc, config)
    except RuntimeError as exc:  # a worker died or hung while starting
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if started:
        _print_banner(
            config, supervisor.addresses, workers=count, metrics_server=supervisor.metrics_server
        )
        if ready_file is not None:
            write_ready_file(
                ready_file, supervisor.addresses, supervisor.port, supervisor.metrics_port
            )
    code = supervisor.wait()
    print("Rigger gRPC Server stopped.", flush=True)
    return code


def write_ready_file(
    path: pathlib.Path, addresses: list[str], port: int, metrics_port: int | None = None
) -> None:
    """Say, machine-readably, where the server listens; written whole or not at all."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    ready: dict[str, Any] = {"addresses": addresses, "port": port, "pid": os.getpid()}
    if metrics_port is not None:
        ready["metrics_port"] = metrics_port
    partial.write_text(json.dumps(ready) + "\n", encoding="utf-8")
    partial.replace(path)


def _start_failed(exc: Exception, config: ServerConfig) -> int:
    if isinstance(exc, TokenFileError):
        print(f"error: --auth-token-file: {exc}", file=sys.stderr)
        return 2
    if isinstance(exc, CertificateError):
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if isinstance(exc, DatabaseUnusable):
        print(f"error: --db: {exc}", file=sys.stderr)
        return 1
    if isinstance(exc, StoreFault):
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if isinstance(exc, MetricsBindError):
        print(
            f"error: --metrics-port: cannot bind {exc.address}: {exc.reason}.\n"
            "Stop whatever holds it, or pick another port (0 picks a free one).",
            file=sys.stderr,
        )
        return 1
    assert isinstance(exc, PortInUse)
    if config.port == 0:
        # Every free port the kernel offered was taken on another address.
        print(
            f"error: cannot bind {exc.address}: Address already in use.\n"
            f"--port 0 tried {PORT_ATTEMPTS} free ports; another process held each of them "
            f"on one of the addresses (the last: port {exc.port}). Pick a port:\n"
            f"    rig grpc --port 50052",
            file=sys.stderr,
        )
        return 1
    print(
        f"error: cannot bind {exc.address}: Address already in use.\n"
        f"Another process is using port {exc.port}. Stop it, or pick another port:\n"
        f"    rig grpc --port {exc.port + 1 if exc.port < 65535 else 50052}",
        file=sys.stderr,
    )
    return 1


def _print_banner(
    config: ServerConfig,
    addresses: list[str],
    workers: int,
    metrics_server: MetricsServer | None = None,
) -> None:
    first, *others = addresses
    also = f" (also {', '.join(others)})" if others else ""
    processes = f"\n   Workers: {workers} processes sharing the port" if workers > 1 else ""
    exposed = f"\n   Metrics: {metrics_server.url}" if metrics_server else ""
    print(
        "🚀 Rigger gRPC Server starting...\n"
        "   Protocol: gRPC over HTTP/2\n"
        f"   Address: {first}{also}\n"
        f"   Database: {db_target.describe(config.db_path)}\n"
        f"   Security: {_security_summary(config)}{processes}\n"
        f"   Planner: {_planner_summary(config)}{exposed}\n"
        f"   Broadcast: Enabled ({config.buffer} event buffer)",
        flush=True,
    )


def _check_security_flags(args: argparse.Namespace) -> str | None:
    if bool(args.tls_cert) != bool(args.tls_key):
        return "--tls-cert and --tls-key go together"
    if args.tls_client_ca and not args.tls_cert:
        return "--tls-client-ca needs --tls-cert and --tls-key"
    if args.public_health and not args.auth_token_file:
        return "--public-health only means something with --auth-token-file"
    for flag in ("tls_cert", "tls_key", "tls_client_ca"):
        path = getattr(args, flag)
        if path is not None and not path.is_file():
            return f"--{flag.replace('_', '-')}: no such file: {path}"
    return None


def _planner_summary(config: ServerConfig) -> str:
    planner = config.planner
    if planner.planner == "offline":
        return "offline (built in, no model)"
    return (
        f"ollama at {planner.ollama_url} (default model {planner.default_model}; "
        "model 'offline' for the built-in planner)"
    )


def _security_summary(config: ServerConfig) -> str:
    parts = []
    if config.tls is None:
        parts.append("plaintext")
    elif config.tls.client_ca is None:
        parts.append("TLS")
    else:
        parts.append("TLS with client certificates (mTLS)")
    if config.auth_token_file is None:
        parts.append("no token required")
    else:
        public = ", health and reflection public" if config.public_health else ""
        parts.append(f"bearer token required{public}")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rig` command."""
    args = build_parser().parse_args(argv)
    logs.configure(getattr(args, "log_format", "text"))
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
