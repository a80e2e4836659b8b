"""PRD markdown: parsing it. Reading the file, confined to the project root, is `confined.py`."""

from __future__ import annotations

import dataclasses

from markdown_it import MarkdownIt
from markdown_it.token import Token

from rigger_server.errors import InvalidArgument

# Section headings (level 2, compared case-insensitively) and the field each fills.
SECTIONS = {"objectives": "objectives", "tech stack": "tech_stack", "constraints": "constraints"}


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedPrd:
    """What a PRD says: its title and the list items of the known sections."""

    title: str
    objectives: tuple[str, ...]
    tech_stack: tuple[str, ...]
    constraints: tuple[str, ...]


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
    for i in range(start + 1, len(tokens)):  # not a slice: that copies the rest per item
        token = tokens[i]
        if token.type == "list_item_close" and token.level == level:
            break
        if token.type == "inline":
            return " ".join(token.content.split())
    return ""
