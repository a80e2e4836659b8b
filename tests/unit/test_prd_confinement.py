"""The confined reader without a server: what ParsePRD reads, follows and refuses."""

from __future__ import annotations

import contextlib
import os
import pathlib

import pytest
from rigger_server.confined import read_confined
from rigger_server.errors import InvalidArgument, NotFound, PermissionDenied


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
