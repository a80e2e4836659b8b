"""Shared fixtures: a real server on a free port and clients speaking real gRPC."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from rigger.v1 import rigger_pb2_grpc

from testkit.serverproc import ServerProcess


@pytest.fixture
def project(tmp_path: pathlib.Path) -> pathlib.Path:
    """An empty project directory to start the server in."""
    root = tmp_path / "project"
    root.mkdir()
    return root


@pytest.fixture
def server(project: pathlib.Path) -> Iterator[ServerProcess]:
    """A running server with a fresh database, stopped after the test."""
    proc = ServerProcess(project).start()
    yield proc
    proc.stop()


@pytest.fixture
async def stub(server: ServerProcess) -> AsyncIterator[rigger_pb2_grpc.RiggerServiceStub]:
    """An async client stub connected to `server`."""
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield rigger_pb2_grpc.RiggerServiceStub(channel)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for a whole test module, for tests that tolerate each other's data."""
    root = tmp_path_factory.mktemp("shared") / "project"
    root.mkdir()
    proc = ServerProcess(root).start()
    yield proc
    proc.stop()


@pytest.fixture
async def shared_stub(
    shared_server: ServerProcess,
) -> AsyncIterator[rigger_pb2_grpc.RiggerServiceStub]:
    """An async client stub connected to `shared_server`."""
    async with grpc.aio.insecure_channel(shared_server.address) as channel:
        yield rigger_pb2_grpc.RiggerServiceStub(channel)
