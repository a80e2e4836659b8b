"""ParsePRD reads only files confined to the project root, even while the tree changes under it.

The race: a directory inside the root and a symlink to a directory outside it
swap places (renameat2 RENAME_EXCHANGE) as fast as the kernel allows while a
client asks for a file through that directory. Every answer must be the inside
file or a refusal: never the outside file, never INTERNAL.
"""

from __future__ import annotations

import ctypes
import pathlib
import subprocess
import sys

import grpc
import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc

from testkit.serverproc import ServerProcess

# Calls made while the swap runs. Each is a round trip of a millisecond or two,
# and the swap is far faster, so both states are seen many times over.
RACE_CALLS = 1000

_SWAPPER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
a, b = os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2])
print("swapping", flush=True)
while True:
    if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0:
        sys.exit("renameat2: " + os.strerror(ctypes.get_errno()))
"""


def _can_exchange(directory: pathlib.Path) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    a, b = directory / "probe-a", directory / "probe-b"
    a.mkdir()
    b.symlink_to("probe-a")
    try:
        return libc.renameat2(-100, bytes(a), -100, bytes(b), 2) == 0
    finally:
        b.unlink() if b.is_symlink() else b.rmdir()
        a.unlink() if a.is_symlink() else a.rmdir()


@pytest.fixture
def swapped_tree(tmp_path):
    """project/d/prd.md inside, outside/prd.md beside it, and project/x -> ../outside."""
    project = tmp_path / "project"
    (project / "d").mkdir(parents=True)
    (project / "d" / "prd.md").write_text("# Inside\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "prd.md").write_text("# Secret\n")
    (project / "x").symlink_to("../outside")
    if not _can_exchange(tmp_path):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    return project


def test_swapping_a_directory_for_an_outside_symlink_never_reads_outside(swapped_tree):
    project = swapped_tree
    server = ServerProcess(project).start()
    swapper = subprocess.Popen(
        [sys.executable, "-c", _SWAPPER, str(project / "d"), str(project / "x")],
        stdout=subprocess.PIPE,
        text=True,
    )
    outcomes: dict[str, int] = {}
    try:
        assert swapper.stdout is not None and swapper.stdout.readline() == "swapping\n"
        with grpc.insecure_channel(server.address) as channel:
            stub = rigger_pb2_grpc.RiggerServiceStub(channel)
            for _ in range(RACE_CALLS):
                try:
                    reply = stub.ParsePRD(pb.ParsePRDRequest(prd_file_path="d/prd.md"), timeout=30)
                    outcome = f"OK {reply.prd_title}"
                except grpc.RpcError as exc:
                    outcome = exc.code().name
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
    finally:
        swapper.kill()
        swapper.wait()
        server.stop()
    print(f"outcomes of {RACE_CALLS} calls during the swap: {outcomes}")
    assert outcomes.get("OK Secret", 0) == 0, outcomes
    assert outcomes.get("INTERNAL", 0) == 0, outcomes
    assert set(outcomes) <= {"OK Inside", "PERMISSION_DENIED"}, outcomes
    # Both states of the tree were seen, so the race really ran.
    assert outcomes.get("OK Inside", 0) > 0 and outcomes.get("PERMISSION_DENIED", 0) > 0, outcomes
