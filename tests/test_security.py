"""TLS and bearer tokens on a real server: what the conformance cases cannot stage.

Accepted and refused tokens and certificates, mTLS included, are the
conformance suite's (`conformance/cases/security.yaml`); here are a client
that speaks plaintext or distrusts the server, health checks, the token file's
format, rotation by SIGHUP, and what the server writes to its log.
"""

from __future__ import annotations

import pathlib
import signal

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc

# The conformance package lives at the repository root, beside tests/.
from testkit.pki import Authority
from testkit.serverproc import ServerProcess, rig
from testkit.wait import wait_until

TOKEN = "s3cret-token-for-tests"
OTHER_TOKEN = "another-valid-token"


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority(tmp_path_factory.mktemp("pki"))


def _project(tmp_path_factory: pytest.TempPathFactory, name: str) -> pathlib.Path:
    root = tmp_path_factory.mktemp(name) / "project"
    root.mkdir()
    return root


def _credentials(ca: Authority, client=None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca.pem.cert.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )


def _add(channel: grpc.Channel, token: str | None = None, title: str = "t") -> pb.Task:
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    stub = rigger_pb2_grpc.RiggerServiceStub(channel)
    return stub.AddTask(pb.AddTaskRequest(title=title), metadata=metadata, timeout=10).task


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code()


# --- TLS --------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, authority):
    """One TLS server for the module: its tests only connect to it."""
    cert = authority.issue("server", server=True)
    proc = ServerProcess(
        _project(tmp_path_factory, "tls"),
        extra_args=("--tls-cert", str(cert.cert), "--tls-key", str(cert.key)),
        credentials=_credentials(authority),
    ).start()
    yield proc
    proc.stop()


def test_tls_server_banner_says_tls(tls_server):
    assert "Security: TLS;" in tls_server.banner


def test_tls_server_refuses_a_plaintext_client(tls_server):
    with grpc.insecure_channel(tls_server.address) as channel:
        assert _code(lambda: _add(channel)) == grpc.StatusCode.UNAVAILABLE


def test_tls_server_refuses_a_client_trusting_another_ca(tls_server, tmp_path):
    stranger = Authority(tmp_path, name="Stranger CA")
    with grpc.secure_channel(f"localhost:{tls_server.port}", _credentials(stranger)) as channel:
        assert _code(lambda: _add(channel)) == grpc.StatusCode.UNAVAILABLE


# --- tokens -----------------------------------------------------------------


def _write_tokens(path: pathlib.Path) -> pathlib.Path:
    path.write_text(f"# one token per line\n{TOKEN}\n\n{OTHER_TOKEN}\n")
    return path


@pytest.fixture
def token_file(project: pathlib.Path) -> pathlib.Path:
    return _write_tokens(project.parent / "tokens.txt")


@pytest.fixture
def token_server(project, token_file):
    """A token server of the test's own, for tests that rotate its tokens or stop it."""
    proc = ServerProcess(
        project, extra_args=("--auth-token-file", str(token_file)), token=TOKEN
    ).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def shared_token_server(tmp_path_factory):
    """One token server for the tests that only call it."""
    root = _project(tmp_path_factory, "tokens")
    tokens = _write_tokens(root.parent / "tokens.txt")
    proc = ServerProcess(root, extra_args=("--auth-token-file", str(tokens)), token=TOKEN).start()
    yield proc
    proc.stop()


def test_comment_and_blank_lines_in_the_token_file_are_skipped(shared_token_server):
    with shared_token_server.channel() as channel:
        assert _add(channel, OTHER_TOKEN).version == 1


def test_health_needs_a_token_unless_public(shared_token_server):
    with shared_token_server.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert (
            _code(lambda: health.Check(health_pb2.HealthCheckRequest()))
            == grpc.StatusCode.UNAUTHENTICATED
        )


def test_public_health_leaves_health_open_but_not_the_service(project, token_file):
    proc = ServerProcess(
        project, extra_args=("--auth-token-file", str(token_file), "--public-health")
    ).start()
    try:
        with proc.channel() as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            assert _code(lambda: _add(channel)) == grpc.StatusCode.UNAUTHENTICATED
    finally:
        proc.stop()


def test_sighup_rotates_tokens_without_a_restart(token_server, token_file):
    token_file.write_text("rotated-token\n")
    token_server.proc.send_signal(signal.SIGHUP)
    with token_server.channel() as channel:

        def accepted() -> bool:
            try:
                _add(channel, "rotated-token")
            except grpc.RpcError:
                return False
            return True

        wait_until(accepted, "the new token to be accepted", within=10)
        assert _code(lambda: _add(channel, TOKEN)) == grpc.StatusCode.UNAUTHENTICATED


def test_a_failed_rotation_keeps_the_current_tokens(token_server, token_file):
    token_file.write_text("# nothing left\n")
    token_server.proc.send_signal(signal.SIGHUP)
    wait_until(
        lambda: "rotation failed" in token_server.read_log(), "the failed rotation's log", within=10
    )
    with token_server.channel() as channel:
        assert _add(channel, TOKEN).version == 1


def test_tokens_never_appear_in_the_log(token_server, token_file):
    with token_server.channel() as channel:
        _add(channel, TOKEN)
        _code(lambda: _add(channel, "wrong-but-secret"))
    token_server.proc.send_signal(signal.SIGHUP)
    token_server.stop()
    log = token_server.read_log() + token_server.banner
    for secret in (TOKEN, OTHER_TOKEN, "wrong-but-secret"):
        assert secret not in log


def test_an_empty_token_file_stops_the_server_at_start(project, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    (project / ".rigger").mkdir()
    result = rig("grpc", "--port", "0", "--auth-token-file", str(empty), cwd=project)
    assert result.returncode == 2
    assert "holds no token" in result.stderr
