"""A stream whose token is revoked ends UNAUTHENTICATED, whatever its handler was doing.

In process: a gRPC server with the interceptors `rig grpc` installs (the call
observer outermost, then the token check) and a coroutine-style streaming
handler, as the health service's Watch is. The revocation lands at a moment
the end-to-end tests reach only by chance (tests/test_token_revocation.py's
health Watch, a few runs in a hundred on a loaded machine): while the
handler's first message is still being written.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator

import grpc
import pytest
from rigger_server.auth import REVOKED_MESSAGE, AuthInterceptor, TokenAuth
from rigger_server.calls import CallObserver

OLD = "old-token-to-be-revoked"
KEPT = "token-that-stays"
# Generous for a loaded machine; a revoked stream ends in milliseconds.
WAIT = 30.0
SERVICE = "test.Revocable"
# Whether gRPC reports the write done before the revocation reaches the
# handler is a race, which the code before the fix lost about one round in
# two; twenty rounds lose it at least once.
ROUNDS = 20
# A large message: gRPC takes longer to report it written.
MESSAGE = b"x" * (1 << 20)


class Watched:
    """A coroutine-style watch whose token is revoked while its first message is in flight."""

    def __init__(self, auth: TokenAuth) -> None:
        self.auth = auth

    async def watch(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
        self.auth.path.write_text(f"{KEPT}\n")
        # Runs on the loop's next step, once the write below has begun.
        asyncio.get_running_loop().call_soon(self.auth.reload)
        await context.write(MESSAGE)
        await asyncio.Event().wait()  # a watch waits for changes until it ends


def accept_both(tokens: pathlib.Path) -> None:
    tokens.write_text(f"{OLD}\n{KEPT}\n")


@pytest.fixture
async def served(tmp_path: pathlib.Path) -> AsyncIterator[tuple[str, TokenAuth]]:
    tokens = tmp_path / "tokens.txt"
    accept_both(tokens)
    auth = TokenAuth(tokens)
    server = grpc.aio.server(
        interceptors=[CallObserver(), AuthInterceptor(auth, public_health=False)]
    )
    handler = grpc.unary_stream_rpc_method_handler(Watched(auth).watch)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Watch": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", auth
    await server.stop(None)


async def test_a_stream_revoked_while_its_first_message_is_written_ends_unauthenticated(served):
    address, auth = served
    async with grpc.aio.insecure_channel(address) as channel:
        for round_ in range(ROUNDS):
            accept_both(auth.path)
            auth.reload()  # the old token is accepted again
            watch = channel.unary_stream(f"/{SERVICE}/Watch")(
                b"", metadata=(("authorization", f"Bearer {OLD}"),)
            )
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                while True:  # the message in flight may arrive first
                    assert await asyncio.wait_for(watch.read(), WAIT) == MESSAGE, round_
            assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED, round_
            assert REVOKED_MESSAGE in ended.value.details()
