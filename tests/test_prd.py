"""ParsePRD: what is read from a PRD, and which paths are refused.

The server's project root is the `project` directory it was started in. The
tests share one server; `project` is its root, emptied before each test.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil

import grpc
import pytest
from rigger.v1 import rigger_pb2 as pb
from streams import WAIT, assert_no_events_after, log_head

PRD = """\
# Rigger

Rigger turns product requirements into tasks.

## Objectives

- Serve the task API
- Broadcast every change
  - to every sidecar
  - in commit order
- Resume without loss

## Tech Stack

1. Python
2. gRPC

## Out of scope

- A web UI

## Constraints

* Runs on a laptop
"""


@pytest.fixture
def project(shared_server) -> pathlib.Path:
    """The shared server's root, with nothing in it but the server's own files."""
    root = shared_server.root
    for entry in root.iterdir():
        if entry.name in (".rigger", shared_server.log_path.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return root


@pytest.fixture
def stub(shared_stub):
    """A client of the module's shared server."""
    return shared_stub


async def parse(stub, path) -> pb.ParsePRDResponse:
    return await stub.ParsePRD(pb.ParsePRDRequest(prd_file_path=str(path)))


async def refused(stub, path) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await asyncio.wait_for(parse(stub, path), WAIT)
    return caught.value


def write(path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


# --- what is parsed -------------------------------------------------------------


async def test_parse_prd_returns_the_title_and_the_items_of_each_section(stub, project):
    write(project / "PRD.md", PRD)
    reply = await parse(stub, "PRD.md")
    assert reply.prd_title == "Rigger"
    assert list(reply.objectives) == [
        "Serve the task API",
        "Broadcast every change",
        "Resume without loss",
    ]
    assert list(reply.tech_stack) == ["Python", "gRPC"]
    assert list(reply.constraints) == ["Runs on a laptop"]


async def test_parse_prd_returns_a_new_prd_id_each_time(stub, project):
    write(project / "PRD.md", PRD)
    first = await parse(stub, "PRD.md")
    second = await parse(stub, "PRD.md")
    assert first.prd_id.startswith("prd-")
    assert second.prd_id.startswith("prd-")
    assert first.prd_id != second.prd_id


async def test_the_title_is_the_first_level_1_heading(stub, project):
    write(project / "PRD.md", "Preamble\n\n## Objectives\n- a\n\n# First\n\n# Second\n")
    assert (await parse(stub, "PRD.md")).prd_title == "First"


async def test_section_headings_are_matched_case_insensitively(stub, project):
    text = "# T\n\n## OBJECTIVES\n- o\n\n## tech stack\n- t\n\n## CoNsTrAiNtS\n- c\n"
    reply = await parse(stub, write(project / "PRD.md", text))
    assert (list(reply.objectives), list(reply.tech_stack), list(reply.constraints)) == (
        ["o"],
        ["t"],
        ["c"],
    )


@pytest.mark.parametrize(
    "items",
    ["- one\n- two\n", "* one\n* two\n", "1. one\n2. two\n", "1) one\n2) two\n"],
    ids=["dash", "star", "dot", "paren"],
)
async def test_every_bullet_style_makes_list_items(stub, project, items):
    reply = await parse(stub, write(project / "PRD.md", f"# T\n\n## Objectives\n\n{items}"))
    assert list(reply.objectives) == ["one", "two"]


async def test_nested_items_are_not_listed_separately(stub, project):
    text = "# T\n\n## Constraints\n\n- outer\n  - inner\n    1. innermost\n- next\n"
    reply = await parse(stub, write(project / "PRD.md", text))
    assert list(reply.constraints) == ["outer", "next"]


async def test_items_of_other_sections_are_ignored(stub, project):
    text = "# T\n\n- before any section\n\n## Notes\n- a note\n\n## Objectives\n- goal\n"
    reply = await parse(stub, write(project / "PRD.md", text))
    assert list(reply.objectives) == ["goal"]
    assert (list(reply.tech_stack), list(reply.constraints)) == ([], [])


async def test_a_prd_with_only_a_title_has_empty_sections(stub, project):
    reply = await parse(stub, write(project / "PRD.md", "# Just a title\n"))
    assert reply.prd_title == "Just a title"
    assert (list(reply.objectives), list(reply.tech_stack), list(reply.constraints)) == (
        [],
        [],
        [],
    )


async def test_a_heading_inside_a_code_block_is_not_the_title(stub, project):
    write(project / "PRD.md", "```\n# not a title\n```\n\n# Real title\n")
    assert (await parse(stub, "PRD.md")).prd_title == "Real title"


async def test_a_utf8_file_with_a_byte_order_mark_is_read(stub, project):
    (project / "PRD.md").write_bytes(b"\xef\xbb\xbf# Caf\xc3\xa9\n")
    assert (await parse(stub, "PRD.md")).prd_title == "Café"


async def test_parse_prd_emits_no_event(stub, project):
    write(project / "PRD.md", PRD)
    head = await log_head(stub)
    await parse(stub, "PRD.md")
    await assert_no_events_after(stub, head)


# --- paths that are accepted ----------------------------------------------------


async def test_a_path_in_a_subdirectory_is_read(stub, project):
    write(project / "docs" / "prd" / "PRD.md", PRD)
    assert (await parse(stub, "docs/prd/PRD.md")).prd_title == "Rigger"


async def test_an_absolute_path_inside_the_root_is_read(stub, project):
    path = write(project / "docs" / "PRD.md", PRD)
    assert (await parse(stub, path)).prd_title == "Rigger"


async def test_a_symlink_inside_the_root_to_a_file_inside_the_root_is_read(stub, project):
    write(project / "docs" / "PRD.md", PRD)
    (project / "link.md").symlink_to(project / "docs" / "PRD.md")
    assert (await parse(stub, "link.md")).prd_title == "Rigger"


async def test_a_file_of_exactly_1_mib_is_read(stub, project):
    head = "# Big\n\n"
    (project / "PRD.md").write_text(head + "a" * (1024 * 1024 - len(head)))
    assert (await parse(stub, "PRD.md")).prd_title == "Big"


# --- paths and files that are refused -------------------------------------------


async def test_a_missing_file_is_not_found(stub):
    error = await refused(stub, "missing.md")
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "prd_file_path" in error.details()


async def test_a_file_without_a_title_is_invalid_argument(stub, project):
    write(project / "PRD.md", "## Objectives\n- a goal\n\n## Title in a level-2 heading\n")
    error = await refused(stub, "PRD.md")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "prd_file_path" in error.details()


async def test_an_empty_file_is_invalid_argument(stub, project):
    write(project / "PRD.md", "")
    assert (await refused(stub, "PRD.md")).code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_an_empty_path_is_invalid_argument(stub):
    error = await refused(stub, "")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "prd_file_path" in error.details()


async def test_a_directory_is_invalid_argument(stub, project):
    (project / "docs").mkdir()
    error = await refused(stub, "docs")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "prd_file_path" in error.details()


def open_fds(pid: int) -> int:
    return len(list(pathlib.Path(f"/proc/{pid}/fd").iterdir()))


@pytest.mark.skipif(not pathlib.Path("/proc/self/fd").is_dir(), reason="needs /proc")
async def test_refusing_a_directory_leaves_no_file_descriptor_open(shared_server, stub, project):
    (project / "docs").mkdir()
    write(project / "PRD.md", PRD)
    await parse(stub, "PRD.md")  # warm up: every lazily opened file is open now
    before = open_fds(shared_server.proc.pid)
    for _ in range(20):
        await refused(stub, "docs")
    assert open_fds(shared_server.proc.pid) < before + 10


async def test_a_file_over_1_mib_is_invalid_argument(stub, project):
    (project / "PRD.md").write_text("# Huge\n" + "a" * (1024 * 1024))
    error = await refused(stub, "PRD.md")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "prd_file_path" in error.details()


async def test_a_file_that_is_not_utf8_is_invalid_argument(stub, project):
    (project / "PRD.md").write_bytes(b"# Caf\xe9 in Latin-1\n")
    error = await refused(stub, "PRD.md")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "UTF-8" in error.details()


async def test_a_fifo_is_permission_denied_without_hanging(stub, project):
    os.mkfifo(project / "PRD.md")
    error = await refused(stub, "PRD.md")
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


def outside_paths(project, exists: bool) -> dict[str, str]:
    """Paths that lead outside the root, each to an existing or a missing file."""
    name = "PRD.md" if exists else "missing.md"
    outside = project.parent / "outside"
    evil = project.parent / f"{project.name}-evil"
    for directory in (outside, evil):
        directory.mkdir(exist_ok=True)
        write(directory / "PRD.md", PRD)
    link = project / f"link-to-{name}"
    if not link.is_symlink():
        link.symlink_to(outside / name)
    return {
        "dot-dot": f"../outside/{name}",
        "dot-dot-inside-absolute": f"{project}/../outside/{name}",
        "absolute-outside": str(outside / name),
        "symlink-to-outside": link.name,
        "sibling-with-the-root-as-prefix": str(evil / name),
    }


KINDS = [
    "dot-dot",
    "dot-dot-inside-absolute",
    "absolute-outside",
    "symlink-to-outside",
    "sibling-with-the-root-as-prefix",
]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_path_outside_the_root_is_permission_denied(stub, project, kind):
    error = await refused(stub, outside_paths(project, exists=True)[kind])
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "prd_file_path" in error.details()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_refusal_does_not_reveal_whether_the_file_exists(stub, project, kind):
    existing = await refused(stub, outside_paths(project, exists=True)[kind])
    missing = await refused(stub, outside_paths(project, exists=False)[kind])
    assert (missing.code(), missing.details()) == (existing.code(), existing.details())
