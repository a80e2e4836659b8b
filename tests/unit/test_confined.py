"""Reading a file confined to the project root: sizes, descriptors, refusals that tell nothing.

What ParsePRD answers for each kind of path and file is the conformance
suite's (`conformance/cases/prd.yaml`, `from_pytest.yaml`); these pin what a
client cannot observe.
"""

from __future__ import annotations

import contextlib
import os
import pathlib

import pytest
from rigger_server.confined import read_confined
from rigger_server.errors import InvalidArgument, PermissionDenied
from rigger_server.limits import Limits

MAX_PRD_BYTES = Limits().max_prd_bytes


def read_prd_file(root: pathlib.Path, requested: str, max_bytes: int = MAX_PRD_BYTES) -> str:
    """Read as ParsePRD reads."""
    return read_confined(root, requested, field="prd_file_path", max_bytes=max_bytes).text


@pytest.fixture
def root(tmp_path: pathlib.Path) -> pathlib.Path:
    root = tmp_path / "project"
    root.mkdir()
    return root


def refusal(root: pathlib.Path, requested: str) -> str:
    with pytest.raises(PermissionDenied) as refused:
        read_prd_file(root, requested)
    return str(refused.value)


def outside_paths(root: pathlib.Path, name: str) -> list[str]:
    """Paths leading outside the root, each to `name` in a directory beside it."""
    outside = root.parent / "outside"
    evil = root.parent / f"{root.name}-evil"
    for directory in (outside, evil):
        directory.mkdir(exist_ok=True)
        (directory / "PRD.md").write_text("# Secret\n")
    link = root / f"link-to-{name}"
    link.symlink_to(outside / name)
    return [
        f"../outside/{name}",
        f"{root}/../outside/{name}",
        str(outside / name),
        link.name,
        str(evil / name),
    ]


def test_a_refusal_says_the_same_whether_or_not_the_file_exists(root):
    existing = [refusal(root, path) for path in outside_paths(root, "PRD.md")]
    missing = [refusal(root, path) for path in outside_paths(root, "missing.md")]
    assert existing == missing
    assert len(set(existing)) == 1


def test_a_file_of_exactly_the_limit_is_read_and_one_byte_more_is_refused(root):
    head = "# Big\n\n"
    (root / "PRD.md").write_text(head + "a" * (MAX_PRD_BYTES - len(head)))
    assert len(read_prd_file(root, "PRD.md")) == MAX_PRD_BYTES
    (root / "PRD.md").write_text(head + "a" * (MAX_PRD_BYTES - len(head) + 1))
    with pytest.raises(InvalidArgument, match=f"larger than {MAX_PRD_BYTES} bytes"):
        read_prd_file(root, "PRD.md")


def test_the_limit_is_the_callers(root):
    (root / "PRD.md").write_text("# T\n" + "x" * 100)
    with pytest.raises(InvalidArgument, match="larger than 64 bytes"):
        read_prd_file(root, "PRD.md", max_bytes=64)


def test_a_byte_order_mark_is_dropped(root):
    (root / "PRD.md").write_bytes(b"\xef\xbb\xbf# Caf\xc3\xa9\n")
    assert read_prd_file(root, "PRD.md") == "# Café\n"


def test_a_nul_in_the_path_is_invalid(root):
    with pytest.raises(InvalidArgument, match="NUL"):
        read_prd_file(root, "PRD\x00.md")


def test_the_root_itself_is_not_a_file_to_read(root):
    refusal(root, str(root))


def open_files() -> list[str]:
    """What this process's descriptors point at."""
    found = []
    for fd in pathlib.Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # closed since it was listed
            found.append(str(fd.readlink()))
    return found


@pytest.mark.skipif(not pathlib.Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_refusing_directories_and_special_files_leaves_no_descriptor_open(root):
    (root / "docs").mkdir()
    os.mkfifo(root / "pipe.md")
    for _ in range(20):
        with pytest.raises(InvalidArgument, match="directory"):
            read_prd_file(root, "docs")
        refusal(root, "pipe.md")
    assert [f for f in open_files() if f.startswith(str(root))] == []


def test_the_path_read_is_the_one_the_walk_took(root):
    (root / "docs").mkdir()
    (root / "docs" / "PRD.md").write_text("# T\n")
    (root / "link.md").symlink_to("docs/PRD.md")
    (root / "alias").symlink_to("docs")
    for requested in ("docs/PRD.md", "link.md", "alias/PRD.md", str(root / "link.md")):
        read = read_confined(root, requested, field="prd_file_path", max_bytes=MAX_PRD_BYTES)
        assert read.path == "docs/PRD.md", requested
