"""A client that freezes (stops answering, its connection still open) is dropped in time.

The server pings an idle connection every --keepalive-seconds and closes it
when a ping goes unanswered for --keepalive-timeout-seconds, releasing its
streams: the documented bound is the sum of the two.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import grpc
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from streams import HEAD_SEQUENCE

from testkit.serverproc import ServerProcess
from testkit.wait import wait_until

KEEPALIVE_SECONDS = 1.0
TIMEOUT_SECONDS = 2.0
# Only a loaded machine's scheduling on top of the documented bound; the bug
# this guards against took 60 s more.
SLACK_SECONDS = 7.0

# A sidecar: subscribes, says so, then reads until it is stopped.
FROZEN_CLIENT = r"""
import sys
import grpc
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc

channel = grpc.insecure_channel(sys.argv[1])
stream = rigger_pb2_grpc.RiggerServiceStub(channel).SubscribeToTaskEvents(
    pb.SubscribeToTaskEventsRequest()
)
stream.initial_metadata()
print("subscribed", flush=True)
for _ in stream:
    pass
"""


def registered(stub: rigger_pb2_grpc.RiggerServiceStub) -> bool:
    """Open a subscription: True if the server registered it, False if it refused it."""
    call = stub.SubscribeToTaskEvents(pb.SubscribeToTaskEventsRequest(), timeout=10)
    metadata = dict(call.initial_metadata())
    call.cancel()
    return HEAD_SEQUENCE in metadata


def test_a_frozen_subscriber_is_dropped_within_keepalive_plus_timeout(project):
    server = ServerProcess(
        project,
        extra_args=(
            "--max-subscribers",
            "1",
            "--keepalive-seconds",
            str(KEEPALIVE_SECONDS),
            "--keepalive-timeout-seconds",
            str(TIMEOUT_SECONDS),
        ),
    ).start()
    client = subprocess.Popen(
        [sys.executable, "-c", FROZEN_CLIENT, server.address], stdout=subprocess.PIPE, text=True
    )
    try:
        assert client.stdout is not None and client.stdout.readline() == "subscribed\n"
        client.send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        bound = KEEPALIVE_SECONDS + TIMEOUT_SECONDS
        with grpc.insecure_channel(server.address) as channel:
            stub = rigger_pb2_grpc.RiggerServiceStub(channel)
            # The frozen client holds the only slot until the server drops it.
            wait_until(
                lambda: registered(stub),
                "the server to drop the frozen client",
                within=frozen_at + bound + SLACK_SECONDS - time.monotonic(),
                every=0.1,
            )
        print(f"dropped {time.monotonic() - frozen_at:.1f} s after freezing (bound {bound} s)")
    finally:
        client.send_signal(signal.SIGCONT)
        client.kill()
        client.wait()
        server.stop()
