"""Session fixtures for the pytest-benchmark micro-benchmarks (run: `pytest bench/`).

One asyncio loop runs in a background thread for the whole session, and an
in-process Rigger server lives on it; benchmarks submit coroutines to that loop
and wait, so no round pays for starting a loop, a server or a channel.
"""

from __future__ import annotations

import asyncio
import pathlib
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import grpc
import pytest
from rigger.v1 import rigger_pb2_grpc
from rigger_server.app import RiggerServer, ServerConfig

T = TypeVar("T")


class BackgroundLoop:
    """An event loop on its own thread; `run` executes a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture(scope="session")
def background_loop() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def rigger_address(
    background_loop: BackgroundLoop, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An in-process Rigger server on the background loop, on a free loopback port."""
    root: pathlib.Path = tmp_path_factory.mktemp("rigger")
    config = ServerConfig(db_path=root / "tasks.db", project_root=root, host="127.0.0.1", port=0)

    async def start() -> RiggerServer:
        server = RiggerServer(config)
        await server.start()
        return server

    server = background_loop.run(start())
    yield f"127.0.0.1:{server.port}"
    background_loop.run(server.stop())


@pytest.fixture(scope="session")
def rigger_stub(
    background_loop: BackgroundLoop, rigger_address: str
) -> Iterator[rigger_pb2_grpc.RiggerServiceStub]:
    """A grpc.aio stub bound to the background loop (create and use it only there)."""

    async def connect() -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(rigger_address)

    channel = background_loop.run(connect())
    yield rigger_pb2_grpc.RiggerServiceStub(channel)
    background_loop.run(channel.close())
