"""The `/metrics` endpoint (`rig grpc --metrics-port`): prometheus_client's WSGI app, bounded.

It runs on threads of its own, never on the event loop that serves gRPC:
a scrape, or a client that abuses the endpoint, costs those threads only.
prometheus_client's own server starts a thread per connection and waits on
each for ever; this one (the same WSGI server underneath) holds at most
METRICS_MAX_CONNECTIONS connections and closes any other at once, and cuts
every connection METRICS_CONNECTION_SECONDS after accepting it, so clients
that send slowly, or never, hold nothing for long. Request lines and
headers are bounded by the standard library (64 KiB a line, 100 headers).

With a token file, every request must carry `Authorization: Bearer <token>`
for one of the tokens the gRPC calls accept (the same TokenAuth, rotated
on SIGHUP); anything else is 401.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import make_wsgi_app
from prometheus_client.registry import CollectorRegistry

from rigger_server.auth import TokenAuth
from rigger_server.limits import METRICS_CONNECTION_SECONDS, METRICS_MAX_CONNECTIONS

log = logging.getLogger(__name__)

PATH = "/metrics"
DEFAULT_HOST = "127.0.0.1"

StartResponse = Callable[..., Any]
App = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class MetricsBindError(Exception):
    """The metrics address could not be bound."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(address, reason)
        self.address = address
        self.reason = reason


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes come every few seconds: no line for each."""


class _Server(WSGIServer):
    """The standard library's WSGI server, a thread per connection, at most `slots` of them."""

    # Set per server by `serve`, from the address's family.
    address_family = socket.AF_INET

    def __init__(self, address: tuple[str, int], handler: type[WSGIRequestHandler]) -> None:
        self._slots = threading.BoundedSemaphore(METRICS_MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: closed at once, nothing read
            return
        thread = threading.Thread(
            target=self._serve, args=(request, client_address), name="rigger-metrics", daemon=True
        )
        try:
            thread.start()
        except RuntimeError:
            self._slots.release()
            self.shutdown_request(request)

    def _serve(self, request: socket.socket, client_address: Any) -> None:
        request.settimeout(METRICS_CONNECTION_SECONDS)
        # The whole connection's deadline: a client that trickles a byte at a
        # time never lets a read time out.
        deadline = threading.Timer(METRICS_CONNECTION_SECONDS, _cut, (request,))
        deadline.daemon = True
        deadline.start()
        try:
            self.finish_request(request, client_address)
        except Exception as exc:  # the client went away, or was cut
            log.debug("metrics request from %s ended: %s", client_address, exc)
        finally:
            deadline.cancel()
            self.shutdown_request(request)
            self._slots.release()


def _cut(request: socket.socket) -> None:
    with contextlib.suppress(OSError):
        request.shutdown(socket.SHUT_RDWR)


def _guarded(app: App, auth: TokenAuth | None) -> App:
    def guarded(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if auth is not None and not auth.accepts(environ.get("HTTP_AUTHORIZATION")):
            start_response(
                "401 Unauthorized",
                [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")],
            )
            return [b"send `Authorization: Bearer <token>` with a token of --auth-token-file\n"]
        if environ.get("PATH_INFO") != PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [f"the metrics are at {PATH}\n".encode()]
        return app(environ, start_response)

    return guarded


class MetricsServer:
    """A running metrics endpoint; `port` is the port it bound."""

    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, auth: TokenAuth | None
    ) -> None:
        try:
            family, _, _, _, sockaddr = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
        except socket.gaierror as exc:
            raise MetricsBindError(f"{host}:{port}", str(exc)) from None
        server_class = type("_BoundServer", (_Server,), {"address_family": family})
        try:
            self._server: _Server = server_class((sockaddr[0], port), _Handler)
        except OSError as exc:
            raise MetricsBindError(f"{host}:{port}", exc.strerror or str(exc)) from None
        self._server.set_app(_guarded(make_wsgi_app(registry), auth))
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="rigger-metrics-accept", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """Where Prometheus scrapes."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{PATH}"

    def close(self) -> None:
        """Stop accepting and close the socket (connections being served finish on their own)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
