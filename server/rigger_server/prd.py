"""PRD markdown: reading a file safely inside the project root, and parsing it."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import stat

from markdown_it import MarkdownIt
from markdown_it.token import Token

from rigger_server.errors import InvalidArgument, NotFound, PermissionDenied

MAX_PRD_BYTES = 1024 * 1024

# Section headings (level 2, compared case-insensitively) and the field each fills.
SECTIONS = {"objectives": "objectives", "tech stack": "tech_stack", "constraints": "constraints"}


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedPrd:
    """What a PRD says: its title and the list items of the known sections."""

    title: str
    objectives: tuple[str, ...]
    tech_stack: tuple[str, ...]
    constraints: tuple[str, ...]


def _outside(root: pathlib.Path) -> PermissionDenied:
    # One message for every refusal, so the answer reveals nothing about
    # whether the file exists or what kind of file it is.
    return PermissionDenied(
        f"prd_file_path: must name a regular file inside the project root {root}"
    )


def read_prd_file(root: pathlib.Path, requested: str, max_bytes: int = MAX_PRD_BYTES) -> str:
    """Read a PRD file confined to `root`: no `..`, no escaping symlinks, no special files."""
    if not requested.strip():
        raise InvalidArgument("prd_file_path", "must not be empty")
    if "\x00" in requested:
        raise InvalidArgument("prd_file_path", "must not contain NUL characters")
    root = root.resolve()
    path = pathlib.Path(requested)
    if ".." in path.parts:
        raise _outside(root)
    if not path.is_absolute():
        path = root / path
    # Decide on the fully resolved path (symlinks followed) before touching
    # the file, so a refusal never depends on the target existing.
    resolved = pathlib.Path(os.path.realpath(path))
    if not resolved.is_relative_to(root) or resolved == root:
        raise _outside(root)
    try:
        # O_NONBLOCK: opening a FIFO must not hang the server; O_NOFOLLOW:
        # the path was resolved above, so a symlink here means it changed.
        fd = os.open(resolved, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise NotFound(f"prd_file_path: no such file: {requested}") from None
    except IsADirectoryError:
        raise InvalidArgument("prd_file_path", f"is a directory: {requested}") from None
    except OSError:
        raise _outside(root) from None
    # Check the kind of file on the descriptor before wrapping it: fdopen
    # itself refuses directories, and the descriptor must not leak.
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InvalidArgument("prd_file_path", f"is a directory: {requested}")
        raise _outside(root)
    with os.fdopen(fd, "rb") as handle:
        if info.st_size > max_bytes:
            raise InvalidArgument("prd_file_path", f"file is larger than {max_bytes} bytes")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InvalidArgument("prd_file_path", f"file is larger than {max_bytes} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidArgument("prd_file_path", f"file is not valid UTF-8 ({exc.reason})") from None


def parse_prd(markdown: str) -> ParsedPrd:
    """Extract the title (first level-1 heading) and the top-level list items per section.

    Items may be written with `-`, `*`, `+`, `1.` or `1)`. Nested items belong
    to their parent item and are not listed separately.
    """
    tokens = MarkdownIt("commonmark").parse(markdown)
    title: str | None = None
    items: dict[str, list[str]] = {field: [] for field in SECTIONS.values()}
    section: str | None = None
    list_depth = 0
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            text = tokens[i + 1].content.strip()
            if token.tag == "h1" and title is None:
                title = text
            if token.tag in ("h1", "h2"):
                section = SECTIONS.get(text.lower()) if token.tag == "h2" else None
        elif token.type in ("bullet_list_open", "ordered_list_open"):
            list_depth += 1
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            list_depth -= 1
        elif token.type == "list_item_open" and list_depth == 1 and section is not None:
            text = _item_text(tokens, i)
            if text:
                items[section].append(text)
    if not title:
        raise InvalidArgument("prd_file_path", "the PRD has no '# Title' heading")
    return ParsedPrd(
        title=title,
        objectives=tuple(items["objectives"]),
        tech_stack=tuple(items["tech_stack"]),
        constraints=tuple(items["constraints"]),
    )


def _item_text(tokens: list[Token], start: int) -> str:
    """The text of a list item's own first paragraph."""
    level = tokens[start].level
    for token in tokens[start + 1 :]:
        if token.type == "list_item_close" and token.level == level:
            break
        if token.type == "inline":
            return " ".join(token.content.split())
    return ""
