"""TLS, mTLS and bearer tokens, on a real server."""

from __future__ import annotations

import pathlib
import signal
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from serverproc import ServerProcess, rig

# The conformance package lives at the repository root, beside tests/.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from conformance.pki import Authority

TOKEN = "s3cret-token-for-tests"
OTHER_TOKEN = "another-valid-token"


@pytest.fixture
def authority(tmp_path: pathlib.Path) -> Authority:
    directory = tmp_path / "pki"
    directory.mkdir()
    return Authority(directory)


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


@pytest.fixture
def tls_server(project, authority):
    cert = authority.issue("server", server=True)
    proc = ServerProcess(
        project,
        extra_args=("--tls-cert", str(cert.cert), "--tls-key", str(cert.key)),
        credentials=_credentials(authority),
    ).start()
    yield proc
    proc.stop()


@pytest.fixture
def mtls_server(project, authority):
    cert = authority.issue("server", server=True)
    client = authority.issue("client", server=False)
    proc = ServerProcess(
        project,
        extra_args=(
            "--tls-cert",
            str(cert.cert),
            "--tls-key",
            str(cert.key),
            "--tls-client-ca",
            str(authority.pem.cert),
        ),
        credentials=_credentials(authority, client),
    ).start()
    yield proc
    proc.stop()


def test_tls_server_serves_a_client_that_trusts_its_ca(tls_server):
    with tls_server.channel() as channel:
        assert _add(channel).version == 1


def test_tls_server_banner_says_tls(tls_server):
    assert "Security: TLS;" in tls_server.banner


def test_tls_server_refuses_a_plaintext_client(tls_server):
    with grpc.insecure_channel(tls_server.address) as channel:
        assert _code(lambda: _add(channel)) == grpc.StatusCode.UNAVAILABLE


def test_tls_server_refuses_a_client_trusting_another_ca(tls_server, tmp_path):
    stranger = Authority(tls_server.root.parent / "pki", name="Stranger CA")
    with grpc.secure_channel(f"localhost:{tls_server.port}", _credentials(stranger)) as channel:
        assert _code(lambda: _add(channel)) == grpc.StatusCode.UNAVAILABLE


def test_mtls_server_serves_a_client_with_a_certificate_from_its_ca(mtls_server):
    with mtls_server.channel() as channel:
        assert _add(channel).version == 1


def test_mtls_server_rejects_a_client_without_a_certificate(mtls_server, authority):
    with grpc.secure_channel(f"localhost:{mtls_server.port}", _credentials(authority)) as channel:
        assert _code(lambda: _add(channel)) == grpc.StatusCode.UNAVAILABLE


def test_mtls_server_rejects_a_certificate_from_another_ca(mtls_server, authority):
    stranger = Authority(mtls_server.root.parent / "pki", name="Stranger CA")
    rogue = stranger.issue("rogue-client", server=False)
    credentials = _credentials(authority, rogue)
    with grpc.secure_channel(f"localhost:{mtls_server.port}", credentials) as channel:
        assert _code(lambda: _add(channel)) == grpc.StatusCode.UNAVAILABLE


# --- tokens -----------------------------------------------------------------


@pytest.fixture
def token_file(project: pathlib.Path) -> pathlib.Path:
    path = project.parent / "tokens.txt"
    path.write_text(f"# one token per line\n{TOKEN}\n\n{OTHER_TOKEN}\n")
    return path


@pytest.fixture
def token_server(project, token_file):
    proc = ServerProcess(
        project, extra_args=("--auth-token-file", str(token_file)), token=TOKEN
    ).start()
    yield proc
    proc.stop()


def test_a_good_token_is_accepted(token_server):
    with token_server.channel() as channel:
        assert _add(channel, TOKEN).version == 1


def test_every_token_in_the_file_is_accepted(token_server):
    with token_server.channel() as channel:
        assert _add(channel, OTHER_TOKEN).version == 1


def test_a_missing_token_is_unauthenticated(token_server):
    with token_server.channel() as channel:
        assert _code(lambda: _add(channel)) == grpc.StatusCode.UNAUTHENTICATED


def test_a_wrong_token_is_unauthenticated(token_server):
    with token_server.channel() as channel:
        assert _code(lambda: _add(channel, "wrong")) == grpc.StatusCode.UNAUTHENTICATED


def test_a_rejected_call_changes_nothing(token_server):
    with token_server.channel() as channel:
        _code(lambda: _add(channel, "wrong"))
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        listed = stub.ListTasks(
            pb.ListTasksRequest(), metadata=(("authorization", f"Bearer {TOKEN}"),)
        )
    assert listed.total_count == 0


def test_streams_need_a_token_too(token_server):
    with token_server.channel() as channel:
        stub = rigger_pb2_grpc.RiggerServiceStub(channel)
        stream = stub.SubscribeToTaskEvents(pb.SubscribeToTaskEventsRequest())
        assert _code(lambda: next(stream)) == grpc.StatusCode.UNAUTHENTICATED


def test_health_needs_a_token_unless_public(token_server):
    with token_server.channel() as channel:
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
        deadline = time.monotonic() + 10
        while True:
            try:
                _add(channel, "rotated-token")
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline, "the new token was never accepted"
                time.sleep(0.05)
        assert _code(lambda: _add(channel, TOKEN)) == grpc.StatusCode.UNAUTHENTICATED


def test_a_failed_rotation_keeps_the_current_tokens(token_server, token_file):
    token_file.write_text("# nothing left\n")
    token_server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "rotation failed" not in token_server.read_log():
        assert time.monotonic() < deadline
        time.sleep(0.05)
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
