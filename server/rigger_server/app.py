"""Server assembly: ports, reflection, health, and graceful shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import pathlib
import resource
import signal
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from rigger.v1 import rigger_pb2

from rigger_server import (
    core_log,
    database,
    db_target,
    metrics,
    metrics_http,
    reflection_v1,
    seams,
    service,
    wire,
)
from rigger_server.auth import AuthInterceptor, TokenAuth
from rigger_server.calls import CallObserver
from rigger_server.database import LogNotifier
from rigger_server.events import DEFAULT_BUFFER, Broadcaster
from rigger_server.limits import MAX_OPEN_FILES, RESERVED_FILES, Limits
from rigger_server.planner import Planner, PlannerConfig, build_planner
from rigger_server.planner.readiness import READY, Readiness, probe_for, watch
from rigger_server.tail import LogTail
from rigger_server.tasks import TaskBook

log = logging.getLogger(__name__)

# The health service name whose status follows the planner: SERVING while it
# can plan (always, offline; with Ollama, while Ollama answers and has the
# default model), NOT_SERVING otherwise. The server's own ("" and
# rigger.v1.RiggerService) does not depend on it: everything else works
# without a model.
PLANNER_HEALTH_NAME = "rigger.v1.RiggerService/planner"


class CertificateError(Exception):
    """A TLS file is unreadable or not PEM, or the key does not match the certificate."""


@dataclasses.dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files for TLS; with `client_ca`, clients must present a certificate it signed."""

    cert: pathlib.Path
    key: pathlib.Path
    client_ca: pathlib.Path | None = None

    def read(self) -> grpc.ServerCertificateConfiguration:
        """The certificate, key and client CA, checked as a set; CertificateError if unusable.

        gRPC checks nothing until a handshake, and then only logs: a key of
        another certificate would fail every connection. The standard
        library's TLS checks them first (parse, and the key matches the
        certificate).
        """
        contents = self._contents()
        try:
            check = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            # An encrypted key cannot be served: gRPC takes no password.
            check.load_cert_chain(self.cert, self.key, password=b"")
            if contents[2] is not None:
                check.load_verify_locations(cadata=contents[2].decode("ascii"))
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise CertificateError(f"{self._names()}: {exc}") from None
        if self._contents() != contents:
            raise CertificateError(f"{self._names()} changed while being read; try again")
        cert, key, client_ca = contents
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=client_ca)

    def _contents(self) -> tuple[bytes, bytes, bytes | None]:
        try:
            return (
                self.cert.read_bytes(),
                self.key.read_bytes(),
                self.client_ca.read_bytes() if self.client_ca else None,
            )
        except OSError as exc:
            raise CertificateError(f"{self._names()}: {exc}") from None

    def _names(self) -> str:
        ca = f", --tls-client-ca {self.client_ca}" if self.client_ca else ""
        return f"--tls-cert {self.cert}, --tls-key {self.key}{ca}"


class Certificates:
    """The certificate the server presents: read from its files at start, again on `reload()`.

    A reload takes effect on the next TLS handshake: new connections get the
    new certificate, open ones keep theirs.
    """

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self._current = files.read()
        # Bumped by each successful reload; every listening address's
        # credentials remember the generation they present.
        self._generation = 0
        self._lock = threading.Lock()

    def credentials(self) -> grpc.ServerCredentials:
        """Credentials for one listening address, presenting the current certificate.

        gRPC takes the initial certificate of dynamic credentials once, for
        the first address they are bound to: each address needs its own.
        It then asks them for a replacement on every new handshake, from
        its own threads.
        """
        with self._lock:
            initial, presented = self._current, self._generation

        def replacement() -> grpc.ServerCertificateConfiguration | None:
            nonlocal presented
            with self._lock:
                if presented == self._generation:
                    return None  # keep the current one
                presented = self._generation
                return self._current

        return grpc.dynamic_ssl_server_credentials(
            initial,
            # gRPC documents None as "no change"; types-grpcio leaves it out.
            replacement,  # type: ignore[arg-type]
            require_client_authentication=self.files.client_ca is not None,
        )

    def reload(self) -> None:
        """Re-read the files; if they are unusable, keep the current certificate and say why."""
        try:
            current = self.files.read()
        except CertificateError as exc:
            log.error("TLS reload failed, keeping the current certificate: %s", exc)
            return
        with self._lock:
            self._current = current
            self._generation += 1
        log.info("TLS files reloaded: new connections get the new certificate")


@dataclasses.dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything `rig grpc` can set; its flags' defaults are these (and Limits')."""

    # A SQLite file, or a postgresql:// URL (db_target.Target).
    db_path: db_target.Target
    project_root: pathlib.Path
    host: str = "localhost"
    port: int = 50051
    # Events queued per subscriber before a lagging one is ended.
    buffer: int = DEFAULT_BUFFER
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
    # `--metrics-port`: serve Prometheus metrics there (0: a free port); None: none.
    metrics_port: int | None = None
    metrics_host: str = metrics_http.DEFAULT_HOST
    # `--log-format`: text, or json (which also logs every call).
    log_format: str = "text"

    def grpc_options(self) -> list[tuple[str, int]]:
        """Channel arguments for the server."""
        limits = self.limits
        return [
            # A second server on a taken port must fail, not silently share it;
            # only the workers of one `rig grpc --workers N` share theirs (the
            # supervisor checked the port was free before starting them).
            ("grpc.so_reuseport", int(self.reuse_port)),
            ("grpc.max_receive_message_length", limits.max_message_bytes),
            # Advertised to clients (SETTINGS_MAX_CONCURRENT_STREAMS); streams
            # beyond it are refused before they cost anything.
            ("grpc.max_concurrent_streams", limits.max_streams_per_connection),
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


# `--port 0` tries this many ports: the kernel's free pick on the first
# loopback address may be held by another process on the other.
PORT_ATTEMPTS = 20


# What SIGHUP would re-read, when the server has none of it.
NOTHING_TO_RELOAD = "there is no --auth-token-file or --tls-cert to re-read"


class PortInUse(Exception):
    """The address could not be bound; `port` is the port tried there."""

    def __init__(self, address: str, port: int) -> None:
        super().__init__(address, port)  # both, so it survives pickling (workers.py)
        self.address = address
        self.port = port


async def bind(
    make: Callable[[], grpc.aio.Server],
    hosts: Sequence[str],
    port: int,
    credentials: Callable[[], grpc.ServerCredentials] | None,
    *,
    first_tries: Sequence[int] = (),
) -> tuple[grpc.aio.Server, list[str], int]:
    """A server from `make`, bound to `port` on every one of `hosts`; its addresses and port.

    gRPC binds a name to whichever of its addresses it can and only logs
    the others, so a port taken on one loopback would go unnoticed: each
    host is bound on its own, and any failure is PortInUse. With port 0 the
    first host takes a free port and the others the same; when another
    process holds it on one of them, a fresh server tries a new free port,
    at most PORT_ATTEMPTS times (`first_tries`: ports to try before the
    kernel's picks, for tests). `credentials` makes one address's TLS
    credentials (None: plaintext).
    """
    tries = [port] if port != 0 else [*first_tries, *[0] * PORT_ATTEMPTS][:PORT_ATTEMPTS]
    failed: PortInUse | None = None
    for candidate in tries:
        server = make()
        addresses: list[str] = []
        try:
            for host in hosts:
                address = f"{host}:{candidate}"
                try:
                    with core_log.bind_failures_held_back():
                        if credentials is None:
                            candidate = server.add_insecure_port(address)
                        else:
                            candidate = server.add_secure_port(address, credentials())
                except RuntimeError as exc:
                    raise PortInUse(address, candidate) from exc
                addresses.append(f"{host}:{candidate}")
        except PortInUse as exc:
            failed = exc
            # A server never started keeps the ports it bound until the
            # process ends; started and stopped at once it lets them go.
            await server.start()
            await server.stop(None)
            continue
        return server, addresses, candidate
    assert failed is not None  # `tries` is never empty
    raise failed


class RiggerServer:
    """A running Rigger server: the gRPC server, its task book and its store."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.port = 0
        self.addresses: list[str] = []
        self._server: grpc.aio.Server | None = None
        # The parts the server is made of: its own, unless a test-only wrapper
        # installed others (seams.py).
        self._seams = seams.installed()
        self._health = self._seams.health()
        self._book: TaskBook | None = None
        self._notifier: LogNotifier | None = None
        self._closing = False
        self._health_updates: set[asyncio.Task[None]] = set()
        self._planner: Planner | None = None
        self._tail: LogTail | None = None
        self._stopping = asyncio.Event()
        self._store_lost = False
        # The metrics sampler and the planner's readiness watch.
        self._background: list[asyncio.Task[None]] = []
        self.auth = TokenAuth(config.auth_token_file) if config.auth_token_file else None
        self.certificates = Certificates(config.tls) if config.tls else None

    async def start(self) -> None:
        """Open the store, bind the port and start serving."""
        config = self.config
        store, notifier = database.open_log(
            config.db_path, wire.encode_event, timeout_seconds=config.limits.db_timeout_seconds
        )
        self._notifier = notifier
        try:
            store = self._seams.store(store)
            broadcaster = self._seams.broadcaster(
                buffer=config.buffer,
                buffer_bytes=config.limits.buffer_bytes,
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
            self._book = self._seams.book(
                store,
                broadcaster,
                config.project_root,
                limits=config.limits,
                publish=self._tail.committed,
                reach=self._tail.reach,
                observe_commit=metrics.commit_observed,
            )
            # Built on the serving loop: the Ollama planner's HTTP client belongs to it.
            self._planner = build_planner(
                config.planner, config.limits, observe=metrics.planner_step
            )
            planning = self._seams.planning(
                self._book, self._planner, self._seams.reconcile, service.encode_generated
            )
            # Outermost, so it sees every call's end, the auth refusals too.
            interceptors: list[grpc.aio.ServerInterceptor] = [
                CallObserver(log_calls=config.log_format == "json")
            ]
            if self.auth:
                interceptors.append(AuthInterceptor(self.auth, public_health=config.public_health))
            server, self.addresses, self.port = await bind(
                lambda: grpc.aio.server(
                    options=config.grpc_options(),
                    interceptors=interceptors,
                    # Every call held costs memory from its headers on, before
                    # its request arrives: the server as a whole holds a bounded number.
                    maximum_concurrent_rpcs=config.limits.max_calls,
                ),
                self._seams.loopbacks(loopbacks()) if config.host == "localhost" else [config.host],
                config.port,
                self.certificates.credentials if self.certificates else None,
            )
            servicer = self._seams.servicer(
                self._book,
                planning,
                token_auth=self.auth,
                on_store_gone=self._store_gone,
                batch_turns=config.batch_turns,
            )
            server.add_generic_rpc_handlers((service.rpc_handler(servicer),))
            health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
            self._seams.reflection(
                (
                    rigger_pb2.DESCRIPTOR.services_by_name["RiggerService"].full_name,
                    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                    reflection.SERVICE_NAME,
                    reflection_v1.SERVICE_NAME,
                ),
                server,
            )
            await server.start()
        except BaseException:
            await self._close_planner()
            await self._close_tail()
            store.close()
            raise
        self._server = server
        await self._set_health(serving=True)
        await self._start_background(broadcaster, servicer)

    async def _start_background(
        self, broadcaster: Broadcaster, servicer: service.RiggerServicer
    ) -> None:
        loop = asyncio.get_running_loop()
        if self.config.metrics_port is not None:
            sampler = metrics.sample_every(broadcaster, servicer.turns)
            self._background.append(loop.create_task(sampler))
        planner = self.config.planner.planner
        probe = probe_for(self._planner)
        if probe is None:
            self._planner_state(READY)
            return
        # Not ready until Ollama says so; asked in the background, so an
        # Ollama that hangs or is absent never delays serving.
        await self._health.set(PLANNER_HEALTH_NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
        metrics.PLANNER_READY.labels(planner).set(0)
        self._background.append(loop.create_task(watch(probe, self._planner_state)))

    def _planner_state(self, state: Readiness) -> None:
        planner = self.config.planner.planner
        metrics.PLANNER_READY.labels(planner).set(1 if state.ready else 0)
        if state.ready:
            if planner != "offline":
                log.info(
                    "planner ready: Ollama at %s has the default model %s",
                    self.config.planner.ollama_url,
                    self.config.planner.default_model,
                )
        else:
            log.warning("planner not ready: %s", state.problem)
        if not self._closing:
            self._track(
                self._health.set(
                    PLANNER_HEALTH_NAME,
                    health_pb2.HealthCheckResponse.SERVING
                    if state.ready
                    else health_pb2.HealthCheckResponse.NOT_SERVING,
                )
            )

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

    async def stop(self) -> None:
        """Graceful stop: NOT_SERVING, let in-flight calls finish, then close the store."""
        if self._server is None or self._book is None:
            return
        self._closing = True
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for name in ("", service.SERVICE_NAME, PLANNER_HEALTH_NAME):
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
        self._track(self._set_health(serving=serving))

    def _track(self, update: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(update)
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
        """From now on SIGTERM (and SIGINT) ask for a graceful stop; SIGHUP re-reads files.

        SIGHUP rotates the tokens and the TLS certificate; with neither it
        is logged and ignored.

        Call it before `start()`, so a Ctrl-C while starting stops cleanly too.
        Worker processes pass `interrupt=False`: Ctrl-C is their supervisor's.
        """
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM) if interrupt else (signal.SIGTERM,):
            loop.add_signal_handler(sig, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._hangup)

    def _hangup(self) -> None:
        # SIGHUP means "re-read the token file and the TLS files"; without
        # them there is nothing to re-read, and the signal must not end the server.
        if self.auth is None and self.certificates is None:
            log.info("SIGHUP ignored: %s", NOTHING_TO_RELOAD)
            return
        if self.auth is not None:
            self.auth.reload()
        if self.certificates is not None:
            self.certificates.reload()

    async def wait(self) -> None:
        """Serve until SIGINT, SIGTERM or `request_stop()`, then stop gracefully."""
        await self._stopping.wait()
        log.info("shutting down")
        await self.stop()
