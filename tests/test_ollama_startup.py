"""`rig grpc --planner ollama` asks Ollama at start whether it answers and has the model.

If not, the server warns naming the fix and starts anyway; the planner's
health (rigger.v1.RiggerService/planner) follows Ollama's state, turning
SERVING when Ollama comes later. An Ollama that hangs never delays serving.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ollama_standin import OllamaStandIn
from rigger_server.app import PLANNER_HEALTH_NAME
from rigger_server.limits import PLANNER_PROBE_LONGEST_SECONDS, PLANNER_PROBE_SECONDS

from testkit.serverproc import ServerProcess
from testkit.wait import wait_until

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# Long enough for the probes' backoff to reach its longest interval once.
COMES_BACK_WITHIN = 2 * PLANNER_PROBE_LONGEST_SECONDS + PLANNER_PROBE_SECONDS


def status(server: ServerProcess, service: str) -> int:
    with grpc.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status


def wait_for_status(server: ServerProcess, service: str, wanted: int, within: float) -> None:
    wait_until(
        lambda: status(server, service) == wanted,
        f"health of {service!r} to become {wanted}",
        within=within,
        every=0.1,
    )


def wait_for_log(server: ServerProcess, *words: str, within: float = 30.0) -> str:
    def said() -> str | None:
        log = server.read_log()
        return log if all(word in log for word in words) else None

    try:
        return wait_until(said, f"the log to say {words}", within=within, every=0.05)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; the log: {server.read_log()}") from None


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def start(project) -> Iterator:
    started: list[ServerProcess] = []

    def run(url: str, *extra: str) -> ServerProcess:
        server = ServerProcess(
            project, extra_args=("--planner", "ollama", "--ollama-url", url, *extra)
        )
        started.append(server)
        return server.start()

    yield run
    for server in started:
        server.stop()


def test_an_ollama_that_does_not_answer_is_warned_about_naming_the_fix(start):
    server = start(f"http://127.0.0.1:{unused_port()}")
    wait_for_log(server, "planner not ready", "ollama serve", "--ollama-url")
    assert status(server, "") == SERVING
    assert status(server, PLANNER_HEALTH_NAME) == NOT_SERVING


def test_a_default_model_not_pulled_is_warned_about_naming_ollama_pull(start):
    with OllamaStandIn(models=("qwen3:8b",)) as ollama:
        server = start(ollama.url)
        wait_for_log(server, "planner not ready", "ollama pull llama3.1")
        assert status(server, PLANNER_HEALTH_NAME) == NOT_SERVING
        assert status(server, "") == SERVING


def test_an_ollama_with_the_model_makes_the_planner_serving(start):
    with OllamaStandIn() as ollama:
        server = start(ollama.url)
        wait_for_status(server, PLANNER_HEALTH_NAME, SERVING, within=30)
        assert "planner not ready" not in server.read_log()


def test_an_ollama_that_comes_later_turns_the_planner_serving(start):
    port = unused_port()
    server = start(f"http://127.0.0.1:{port}")
    wait_for_log(server, "planner not ready")
    with OllamaStandIn(port=port):
        wait_for_status(server, PLANNER_HEALTH_NAME, SERVING, within=COMES_BACK_WITHIN)
        wait_for_log(server, "planner ready")


def test_an_ollama_that_goes_away_turns_the_planner_not_serving(start):
    with OllamaStandIn() as ollama:
        server = start(ollama.url)
        wait_for_status(server, PLANNER_HEALTH_NAME, SERVING, within=30)
    wait_for_status(server, PLANNER_HEALTH_NAME, NOT_SERVING, within=COMES_BACK_WITHIN)


def test_an_ollama_that_hangs_at_start_does_not_delay_serving(start):
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)  # accepts connections in the kernel, never answers
        server = start(f"http://127.0.0.1:{hung.getsockname()[1]}")
        # The probe's connection waits unanswered while the server serves.
        hung.settimeout(30)
        probe, _ = hung.accept()
        probe.close()
        assert status(server, "") == SERVING
        assert status(server, PLANNER_HEALTH_NAME) == NOT_SERVING
        wait_for_log(server, "planner not ready", "ollama serve")


def test_the_offline_planner_is_always_serving(project):
    server = ServerProcess(project).start()
    try:
        wait_for_status(server, PLANNER_HEALTH_NAME, SERVING, within=10)
    finally:
        server.stop()
