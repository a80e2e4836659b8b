"""The Rigger Python client: helpers over the generated rigger.v1 gRPC code.

`connect()` opens a grpc.aio channel (plaintext or (m)TLS, with an optional
bearer token), `stub()` wraps it in the generated async stub, and
`watch_events()` yields task events exactly once, in order, resubscribing
across disconnects. `format_event()` is the line every sidecar prints;
`StateFile` records a consumer's position across its restarts. The generated
messages and stubs are `rigger.v1.rigger_pb2` and `rigger.v1.rigger_pb2_grpc`.
"""

from __future__ import annotations

from rigger_client.backoff import Backoff
from rigger_client.connect import DEFAULT_ADDRESS, connect, stub
from rigger_client.eventline import format_event
from rigger_client.statefile import StateFile, StateFileError
from rigger_client.watch import RETRYABLE, watch_events

__all__ = [
    "DEFAULT_ADDRESS",
    "RETRYABLE",
    "Backoff",
    "StateFile",
    "StateFileError",
    "connect",
    "format_event",
    "stub",
    "watch_events",
]
