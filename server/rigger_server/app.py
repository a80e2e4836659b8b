"""Server assembly: ports, reflection, health, and graceful shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import pathlib
import resource
import signal
import socket

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from rigger.v1 import rigger_pb2

from rigger_server import database, service, wire
from rigger_server.auth import AuthInterceptor, TokenAuth
from rigger_server.database import LogNotifier
from rigger_server.events import Broadcaster
from rigger_server.limits import MAX_OPEN_FILES, RESERVED_FILES, Limits
from rigger_server.planner import Planner, PlannerConfig, build_planner
from rigger_server.planning import Planning
from rigger_server.tail import LogTail
from rigger_server.tasks import TaskBook

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files for TLS; with `client_ca`, clients must present a certificate it signed."""

    cert: pathlib.Path
    key: pathlib.Path
    client_ca: pathlib.Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials from the files."""
        ca = self.client_ca.read_bytes() if self.client_ca else None
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=ca,
            require_client_auth=ca is not None,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything `rig grpc` can set."""

    # A SQLite file, or a postgresql:// URL (database.Target).
    db_path: database.Target
    project_root: pathlib.Path
    host: str = "localhost"
    port: int = 50051
    buffer: int = 1000
    # Batched streams sending at once; the others wait their turn (feed.py).
    batch_turns: int = 8
    grace_seconds: float = 5.0
    limits: Limits = dataclasses.field(default_factory=Limits)
    tls: TlsFiles | None = None
    auth_token_file: pathlib.Path | None = None
    public_health: bool = False
    # Who plans GenerateTasksFromPRD and OrchestrateTask (`--planner`, `--ollama-url`).
    planner: PlannerConfig = dataclasses.field(default_factory=PlannerConfig)
    # True in each worker process of `rig grpc --workers N`: the workers share
    # the port the supervisor checked was free.
    reuse_port: bool = False

    def grpc_options(self) -> list[tuple[str, int]]:
        """Channel arguments for the server."""
        limits = self.limits
        return [
            # A second server on a taken port must fail, not silently share it;
            # only the workers of one `rig grpc --workers N` share theirs (the
            # supervisor checked the port was free before starting them).
            ("grpc.so_reuseport", int(self.reuse_port)),
            ("grpc.max_receive_message_length", limits.max_message_bytes),
            ("grpc.keepalive_time_ms", int(limits.keepalive_seconds * 1000)),
            ("grpc.keepalive_timeout_ms", int(limits.keepalive_timeout_seconds * 1000)),
            # grpcio closes a connection over an unanswered ping only after this
            # (default 60 s), whatever keepalive_timeout_ms says: both are set.
            ("grpc.http2.ping_timeout_ms", int(limits.keepalive_timeout_seconds * 1000)),
            # Keep pinging an idle connection however long it stays idle, so a
            # sidecar that vanishes after hours of quiet is noticed too.
            ("grpc.http2.max_pings_without_data", 0),
            # Sidecars idle for hours between events; let their pings through.
            ("grpc.keepalive_permit_without_calls", 1),
            (
                "grpc.http2.min_ping_interval_without_data_ms",
                int(limits.min_client_ping_seconds * 1000),
            ),
            ("grpc.http2.max_ping_strikes", 2),
            # gRPC turns calls away once more than 1000 wait to be accepted,
            # and the asyncio server accepts one per pass of its loop: the
            # sidecars of a restarted server, all reconnecting at once, would
            # be refused. Every stream the server may hold can wait its turn.
            ("grpc.server.max_pending_requests", 2 * limits.max_subscribers),
            ("grpc.server.max_pending_requests_hard_limit", 3 * limits.max_subscribers),
            # Idle connections cannot pile up: one that never completes its
            # handshake, or stays without a call, is closed; and connections
            # never take the descriptors the server needs for its own files.
            ("grpc.server_handshake_timeout_ms", int(limits.handshake_timeout_seconds * 1000)),
            ("grpc.max_connection_idle_ms", int(limits.max_idle_connection_seconds * 1000)),
            ("grpc.max_allowed_incoming_connections", max_connections()),
        ]


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one (at most MAX_OPEN_FILES); return it.

    Every connection holds a descriptor, and a default soft limit of 1024
    lets a thousand idle connections lock everyone out.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, MAX_OPEN_FILES)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return MAX_OPEN_FILES if soft == resource.RLIM_INFINITY else soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the open-file limit from %d to %d: %s", soft, wanted, exc)
        return soft
    return wanted


def max_connections() -> int:
    """How many connections the server accepts at once: the open-file limit, less a reserve."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = MAX_OPEN_FILES if soft == resource.RLIM_INFINITY else soft
    return max(limit - RESERVED_FILES, 16)


def loopbacks() -> list[str]:
    """The loopback hosts `localhost` means: [::1] (where IPv6 works) and 127.0.0.1."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return ["127.0.0.1"]
    return ["[::1]", "127.0.0.1"]


class PortInUse(Exception):
    """The address could not be bound."""


class RiggerServer:
    """A running Rigger server: the gRPC server, its task book and its store."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.port = 0
        self.addresses: list[str] = []
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._book: TaskBook | None = None
        self._notifier: LogNotifier | None = None
        self._closing = False
        self._health_updates: set[asyncio.Task[None]] = set()
        self._planner: Planner | None = None
        self._tail: LogTail | None = None
        self._stopping = asyncio.Event()
        self._store_lost = False
        self.auth = TokenAuth(config.auth_token_file) if config.auth_token_file else None

    async def start(self) -> None:
        """Open the store, bind the port and start serving."""
        config = self.config
        credentials = config.tls.credentials() if config.tls else None
        store, notifier = database.open_log(config.db_path, wire.encode_event)
        self._notifier = notifier
        try:
            broadcaster = Broadcaster(
                buffer=config.buffer,
                max_subscribers=config.limits.max_subscribers,
                head=store.last_sequence(),
            )
            self._tail = LogTail(broadcaster, store, notifier.announce)
            try:
                await notifier.start(self._tail.seen, self._database_reachable)
            except OSError as exc:
                # Other servers on this database then reach our subscribers
                # through the periodic check only: slower, never lossy.
                log.warning("cannot join the other servers of %s: %s", config.db_path, exc)
                await notifier.close()
                self._notifier = None
            self._tail.start()
            self._book = TaskBook(
                store,
                broadcaster,
                config.project_root,
                limits=config.limits,
                publish=self._tail.committed,
                reach=self._tail.reach,
            )
            # Built on the serving loop: the Ollama planner's HTTP client belongs to it.
            self._planner = build_planner(config.planner, config.limits)
            planning = Planning(self._book, self._planner)
            interceptors = (
                [AuthInterceptor(self.auth, public_health=config.public_health)]
                if self.auth
                else []
            )
            server = grpc.aio.server(options=config.grpc_options(), interceptors=interceptors)
            servicer = service.RiggerServicer(
                self._book,
                planning,
                token_auth=self.auth,
                on_store_gone=self._store_gone,
                batch_turns=config.batch_turns,
            )
            server.add_generic_rpc_handlers((service.rpc_handler(servicer),))
            health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
            reflection.enable_server_reflection(
                (
                    rigger_pb2.DESCRIPTOR.services_by_name["RiggerService"].full_name,
                    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                    reflection.SERVICE_NAME,
                ),
                server,
            )
            self._bind(server, credentials)
            await server.start()
        except BaseException:
            await self._close_planner()
            await self._close_tail()
            store.close()
            raise
        self._server = server
        await self._set_health(serving=True)

    def _store_gone(self) -> None:
        if self._store_lost:
            return
        self._store_lost = True
        log.error(
            "the database file %s was deleted or replaced while serving: every write is "
            "refused and health says NOT_SERVING until the server restarts",
            self.config.db_path,
        )
        self._update_health(serving=False)

    def _bind(self, server: grpc.aio.Server, credentials: grpc.ServerCredentials | None) -> None:
        # gRPC binds "localhost" to whichever of its addresses it can and only
        # logs the others, so a port taken on one loopback would go unnoticed.
        # Binding each address ourselves makes any failure an error.
        hosts = loopbacks() if self.config.host == "localhost" else [self.config.host]
        port = self.config.port
        for host in hosts:
            address = f"{host}:{port}"
            try:
                if credentials is None:
                    port = server.add_insecure_port(address)
                else:
                    port = server.add_secure_port(address, credentials)
            except RuntimeError as exc:
                raise PortInUse(address) from exc
            self.addresses.append(f"{host}:{port}")
        self.port = port

    async def stop(self) -> None:
        """Graceful stop: NOT_SERVING, let in-flight calls finish, then close the store."""
        if self._server is None or self._book is None:
            return
        self._closing = True
        for name in ("", service.SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        # Subscribers get UNAVAILABLE with their last sequence at once, rather
        # than being cut off when the grace period runs out.
        self._book.broadcaster.close()
        await self._server.stop(self.config.grace_seconds)
        await self._close_planner()
        await self._close_tail()
        await self._book.close()
        self._server = None

    async def _close_planner(self) -> None:
        if self._planner is not None:
            await self._planner.aclose()
            self._planner = None

    async def _close_tail(self) -> None:
        if self._tail is not None:
            await self._tail.close()
        if self._notifier is not None:
            await self._notifier.close()
            self._notifier = None

    def _database_reachable(self, reachable: bool) -> None:
        # Health follows the database, so a load balancer stops sending calls
        # that could only fail UNAVAILABLE; open streams stay open meanwhile.
        if self._server is None or self._closing:
            return
        self._update_health(serving=reachable)

    def _update_health(self, *, serving: bool) -> None:
        task = asyncio.get_running_loop().create_task(self._set_health(serving=serving))
        self._health_updates.add(task)
        task.add_done_callback(self._health_updates.discard)

    async def _set_health(self, *, serving: bool) -> None:
        if self._closing:
            return
        # A database file deleted under the server stays lost until a restart.
        serving = serving and not self._store_lost
        for name in ("", service.SERVICE_NAME):
            await self._health.set(
                name,
                health_pb2.HealthCheckResponse.SERVING
                if serving
                else health_pb2.HealthCheckResponse.NOT_SERVING,
            )

    def request_stop(self) -> None:
        """Make `wait()` stop the server gracefully, as SIGTERM does."""
        self._stopping.set()

    @property
    def stop_requested(self) -> bool:
        """True once SIGINT, SIGTERM or `request_stop()` asked the server to stop."""
        return self._stopping.is_set()

    def handle_signals(self, *, interrupt: bool = True) -> None:
        """From now on SIGTERM (and SIGINT) ask for a graceful stop; SIGHUP rotates tokens.

        Without a token file SIGHUP is logged and ignored.

        Call it before `start()`, so a Ctrl-C while starting stops cleanly too.
        Worker processes pass `interrupt=False`: Ctrl-C is their supervisor's.
        """
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM) if interrupt else (signal.SIGTERM,):
            loop.add_signal_handler(sig, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._hangup)

    def _hangup(self) -> None:
        # SIGHUP means "re-read the token file"; without one there is
        # nothing to re-read, and the signal must not end the server.
        if self.auth is None:
            log.info("SIGHUP ignored: there is no --auth-token-file to re-read")
            return
        self.auth.reload()

    async def wait(self) -> None:
        """Serve until SIGINT, SIGTERM or `request_stop()`, then stop gracefully."""
        await self._stopping.wait()
        log.info("shutting down")
        await self.stop()
