"""SIGHUP re-reads the token and TLS files; without them it is logged, and the server serves on."""

from __future__ import annotations

import signal

import grpc
import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from streams import WAIT

from testkit.serverproc import ServerProcess
from testkit.wait import wait_until

IGNORED = "SIGHUP ignored: there is no --auth-token-file or --tls-cert to re-read"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sighup_without_a_token_file_is_logged_and_ignored(project, workers):
    server = ServerProcess(project, extra_args=("--workers", workers)).start()
    try:
        server.proc.send_signal(signal.SIGHUP)

        def logged() -> bool:
            assert server.proc.poll() is None, f"the server died: {server.read_log()}"
            return IGNORED in server.read_log()

        wait_until(logged, "a log line for the SIGHUP", within=WAIT)
        with grpc.insecure_channel(server.address) as channel:
            stub = rigger_pb2_grpc.RiggerServiceStub(channel)
            assert stub.AddTask(pb.AddTaskRequest(title="still serving"), timeout=WAIT).task.id
    finally:
        code = server.stop()
    assert code == 0, server.read_log()
