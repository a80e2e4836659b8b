"""ParsePRD reads only files confined to the project root, even while the tree changes under it.

The race: a directory inside the root and a symlink to a directory outside it
swap places (renameat2 RENAME_EXCHANGE) as fast as the kernel allows while a
client asks for a file through that directory. Every answer must be the inside
file or a refusal: never the outside file, never INTERNAL.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pathlib
import subprocess
import sys

import grpc
import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from rigger_server.confined import read_confined
from rigger_server.errors import InvalidArgument, NotFound, PermissionDenied

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


# --- the confined reader, without a server ------------------------------------


@pytest.fixture
def root(tmp_path) -> pathlib.Path:
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "prd.md").write_text("# Inside\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "prd.md").write_text("# Secret\n")
    return root


def read(root: pathlib.Path, path: str) -> str:
    return read_confined(root, path, field="prd_file_path", max_bytes=1024).text


def test_a_file_inside_the_root_is_read(root):
    assert read(root, "docs/prd.md") == "# Inside\n"


def test_an_absolute_path_inside_the_root_is_read(root):
    assert read(root, str(root / "docs" / "prd.md")) == "# Inside\n"


def test_a_relative_symlink_that_stays_inside_is_followed(root):
    (root / "link").symlink_to("docs")
    (root / "docs" / "up.md").symlink_to("../docs/prd.md")
    assert read(root, "link/up.md") == "# Inside\n"


def test_an_absolute_symlink_that_stays_inside_is_followed(root):
    (root / "link.md").symlink_to(root / "docs" / "prd.md")
    assert read(root, "link.md") == "# Inside\n"


@pytest.mark.parametrize(
    "target", ["../outside", "../outside/prd.md", "docs/../../outside/prd.md", "/etc"]
)
def test_a_symlink_leading_out_is_refused(root, target):
    (root / "escape").symlink_to(target)
    path = "escape" if target.endswith(".md") else "escape/prd.md"
    if target == "/etc":
        path = "escape/passwd"
    with pytest.raises(PermissionDenied):
        read(root, path)


def test_a_symlink_loop_is_refused(root):
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("a")
    with pytest.raises(PermissionDenied):
        read(root, "a/prd.md")


def test_a_file_with_a_second_hard_link_is_refused(root, tmp_path):
    # A hard link inside the root to a file outside it looks like any file
    # inside; refusing every file with more than one link is what stops it.
    os.link(tmp_path / "outside" / "prd.md", root / "linked.md")
    with pytest.raises(PermissionDenied):
        read(root, "linked.md")


def test_the_refusal_does_not_name_the_project_root(root):
    with pytest.raises(PermissionDenied) as refused:
        read(root, "../outside/prd.md")
    assert str(root) not in str(refused.value)
    assert str(root.parent) not in str(refused.value)


def test_a_missing_file_is_not_found_naming_the_requested_path(root):
    with pytest.raises(NotFound) as missing:
        read(root, "docs/missing.md")
    assert "docs/missing.md" in str(missing.value)


def test_a_path_through_a_file_is_not_found(root):
    with pytest.raises(NotFound):
        read(root, "docs/prd.md/deeper.md")


def test_the_root_itself_is_refused(root):
    with pytest.raises(PermissionDenied):
        read(root, str(root))


def test_a_directory_is_invalid_argument(root):
    with pytest.raises(InvalidArgument) as refused:
        read(root, "docs")
    assert "directory" in str(refused.value)


def _open_under(directory: pathlib.Path) -> list[str]:
    """What this process holds open under `directory` (or at it)."""
    held = []
    for fd in pathlib.Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # closed while we looked
            target = str(fd.readlink())
            if target == str(directory) or target.startswith(f"{directory}/"):
                held.append(target)
    return held


@pytest.mark.skipif(not pathlib.Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_reading_leaves_no_descriptor_open(root):
    # Only descriptors on the tree read here count: the test process holds
    # others (channels, event loops) that come and go on their own.
    (root / "escape").symlink_to("../outside")
    tree = root.parent.resolve()
    for path in ("docs/prd.md", "docs", "escape/prd.md", "missing.md", "docs/prd.md/x"):
        with contextlib.suppress(InvalidArgument, NotFound, PermissionDenied):
            read(root, path)
    assert _open_under(tree) == []
