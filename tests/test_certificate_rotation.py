"""SIGHUP re-reads the TLS files: new connections get the new certificate, without a restart.

Operators rotate certificates in place (cert-manager, certbot) and signal the
server. A set of files that does not work — unreadable, not PEM, a key that
does not match its certificate — is refused with a log line, and the server
goes on presenting the certificate it had.
"""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import signal
import socket
import ssl
from collections.abc import Iterator

import grpc
import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from streams import WAIT
from worker_processes import connection_holder, worker_pids

# The conformance package lives at the repository root, beside tests/.
from testkit.pki import Authority, Pem
from testkit.serverproc import ServerProcess, rig
from testkit.wait import wait_until

RELOADED = "TLS files reloaded"
FAILED = "TLS reload failed, keeping the current certificate"
BROKEN_KEY = "-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n"
# Connections opened to find both workers of `--workers 2` before giving up.
MAX_CONNECTIONS = 64


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def old(authority: Authority) -> Pem:
    return authority.issue("old-server", server=True)


@pytest.fixture(scope="module")
def new(authority: Authority) -> Pem:
    return authority.issue("new-server", server=True)


@pytest.fixture
def served(project: pathlib.Path, old: Pem) -> Pem:
    """The files the server reads: a copy of `old` to begin with."""
    files = Pem(project.parent / "server.crt", project.parent / "server.key")
    install(old, files)
    return files


def install(source: Pem, files: Pem) -> None:
    """Put `source` in place of `files`, each file replaced whole, as rotation tools do."""
    for src, dst in ((source.cert, files.cert), (source.key, files.key)):
        partial = dst.with_suffix(".partial")
        shutil.copyfile(src, partial)
        partial.replace(dst)


def der(pem: Pem) -> bytes:
    """The certificate of `pem` as DER, as a TLS client sees it."""
    return ssl.PEM_cert_to_DER_cert(pem.cert.read_text())


@contextlib.contextmanager
def tls_connection(port: int, ca: Authority, client: Pem | None = None) -> Iterator[ssl.SSLSocket]:
    """A new TLS connection to the server, handshake done."""
    context = ssl.create_default_context(cafile=str(ca.pem.cert))
    context.set_alpn_protocols(["h2"])
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        yield tls


def presented(port: int, ca: Authority) -> bytes:
    """The certificate a new connection is shown (DER)."""
    with tls_connection(port, ca) as tls:
        certificate = tls.getpeercert(binary_form=True)
    assert certificate is not None
    return certificate


def wait_for_log(server: ServerProcess, line: str, count: int = 1) -> None:
    def logged() -> bool:
        assert server.proc is not None and server.proc.poll() is None, server.read_log()
        return server.read_log().count(line) >= count

    wait_until(logged, f"{line!r} {count} times in the log", within=WAIT)


def credentials(ca: Authority, client: Pem | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca.pem.cert.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )


def add(server: ServerProcess, creds: grpc.ChannelCredentials) -> str:
    """AddTask over a new connection; the new task's id."""
    with grpc.secure_channel(f"localhost:{server.port}", creds) as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        return str(stub.AddTask(pb.AddTaskRequest(title="t"), timeout=WAIT).task.id)


def tls_server(project: pathlib.Path, files: Pem, ca: Authority, *extra: str) -> ServerProcess:
    return ServerProcess(
        project,
        extra_args=("--tls-cert", str(files.cert), "--tls-key", str(files.key), *extra),
        credentials=credentials(ca),
    ).start()


def test_sighup_serves_the_new_certificate_to_new_connections(project, authority, served, old, new):
    server = tls_server(project, served, authority)
    try:
        assert presented(server.port, authority) == der(old)
        with tls_connection(server.port, authority) as before:
            install(new, served)
            server.proc.send_signal(signal.SIGHUP)
            wait_for_log(server, RELOADED)
            assert presented(server.port, authority) == der(new)
            # A connection made before keeps its session.
            assert before.getpeercert(binary_form=True) == der(old)
        assert add(server, credentials(authority))
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(
    "breakage",
    ["key-of-another-certificate", "certificate-missing", "certificate-not-pem", "key-not-pem"],
)
def test_a_broken_rotation_keeps_the_current_certificate(
    project, authority, served, old, new, breakage
):
    server = tls_server(project, served, authority)
    try:
        if breakage == "key-of-another-certificate":
            install(Pem(new.cert, old.key), served)
        elif breakage == "certificate-missing":
            served.cert.unlink()
        elif breakage == "certificate-not-pem":
            served.cert.write_text("not a certificate\n")
        else:
            served.key.write_text(BROKEN_KEY)
        server.proc.send_signal(signal.SIGHUP)
        wait_for_log(server, FAILED)
        assert presented(server.port, authority) == der(old)
        assert add(server, credentials(authority))
        # A later rotation with good files still works.
        install(new, served)
        server.proc.send_signal(signal.SIGHUP)
        wait_for_log(server, RELOADED)
        assert presented(server.port, authority) == der(new)
    finally:
        assert server.stop() == 0
    assert "PRIVATE KEY" not in server.read_log()


def test_sighup_rotates_the_client_ca_of_mtls(project, authority, served, tmp_path):
    client = authority.issue("client", server=False)
    (tmp_path / "successor").mkdir()
    successor = Authority(tmp_path / "successor", name="Successor CA")
    successor_client = successor.issue("client", server=False)
    client_ca = project.parent / "client-ca.crt"
    shutil.copyfile(authority.pem.cert, client_ca)
    server = ServerProcess(
        project,
        extra_args=(
            "--tls-cert",
            str(served.cert),
            "--tls-key",
            str(served.key),
            "--tls-client-ca",
            str(client_ca),
        ),
        credentials=credentials(authority, client),
    ).start()
    try:
        assert add(server, credentials(authority, client))
        shutil.copyfile(successor.pem.cert, client_ca)
        server.proc.send_signal(signal.SIGHUP)
        wait_for_log(server, RELOADED)
        assert add(server, credentials(authority, successor_client))
        with pytest.raises(grpc.RpcError) as refused:
            add(server, credentials(authority, client))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        assert server.stop() == 0


def test_every_worker_serves_the_new_certificate(project, authority, served, new):
    server = tls_server(project, served, authority, "--workers", "2")
    try:
        workers = worker_pids(server)
        assert len(workers) == 2
        install(new, served)
        server.proc.send_signal(signal.SIGHUP)
        wait_for_log(server, RELOADED, count=2)
        seen: set[int] = set()
        for _ in range(MAX_CONNECTIONS):
            with tls_connection(server.port, authority) as tls:
                assert tls.getpeercert(binary_form=True) == der(new)
                holder = wait_until(
                    lambda tls=tls: connection_holder(workers, server.port, tls.getsockname()[1]),
                    "a worker holding the connection",
                    within=WAIT,
                )
                seen.add(holder)
            if seen == workers:
                break
        assert seen == workers, f"all connections went to {seen} of {workers}"
    finally:
        assert server.stop() == 0


def test_a_key_that_does_not_match_its_certificate_stops_the_server_at_start(project, old, new):
    (project / ".rigger").mkdir()
    result = rig(
        "grpc", "--port", "0", "--tls-cert", str(new.cert), "--tls-key", str(old.key), cwd=project
    )
    assert result.returncode == 2
    assert "--tls-cert" in result.stderr and "mismatch" in result.stderr.lower()
