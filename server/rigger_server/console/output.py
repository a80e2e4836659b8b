"""How the client commands print: a readable table or detail by default, JSON lines with --json.

Whatever a task holds is written by someone else, so the readable forms
escape control and formatting characters (an escape sequence in a title
must not reach the terminal) and cut long titles; --json escapes them as
JSON does and cuts nothing.
"""

from __future__ import annotations

import io
import json
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf.message import Message
from rigger.v1 import rigger_pb2 as pb

from rigger_server.console import statuses
from rigger_server.console.jsonform import to_json

# Columns of the task table; an id this long is unambiguous in practice, and
# every command accepts it as a prefix.
SHORT_ID = 8
MAX_TITLE_COLUMN = 72
MAX_ASSIGNEE_COLUMN = 20
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Zl", "Zp"})


def utf8_stdio() -> None:
    """Write UTF-8 whatever the locale says: titles are arbitrary Unicode."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(encoding="utf-8", errors="strict", newline="\n")
    if isinstance(sys.stderr, io.TextIOWrapper):
        sys.stderr.reconfigure(encoding="utf-8", errors="backslashreplace")


def safe(text: str, limit: int | None = None) -> str:
    """`text` with every control or formatting character escaped, cut to `limit` characters."""
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    if all(c.isprintable() or c == " " for c in text):
        return text
    return "".join(
        f"\\u{ord(c):04x}" if unicodedata.category(c) in _UNSAFE_CATEGORIES else c for c in text
    )


def safe_lines(text: str) -> list[str]:
    """`text` split at its line breaks, each line made safe."""
    return [safe(line) for line in text.split("\n")]


def json_line(message: Message | dict[str, Any]) -> None:
    """One JSON object on one line of stdout."""
    value = to_json(message) if isinstance(message, Message) else message
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")


def task_rows(tasks: Iterable[pb.Task]) -> list[tuple[str, ...]]:
    """The table's cells for each task."""
    return [
        (
            task.id[:SHORT_ID],
            statuses.label(task.status),
            safe(task.assignee, MAX_ASSIGNEE_COLUMN) if task.HasField("assignee") else "-",
            safe(task.due_date) if task.HasField("due_date") else "-",
            safe(task.title, MAX_TITLE_COLUMN),
        )
        for task in tasks
    ]


TASK_HEADER = ("ID", "STATUS", "ASSIGNEE", "DUE", "TITLE")


def table(rows: Sequence[tuple[str, ...]], header: tuple[str, ...] | None = TASK_HEADER) -> None:
    """Rows as aligned columns, under `header` (None: no header, for a table's next page)."""
    everything = [header, *rows] if header else list(rows)
    if not everything:
        return
    widths = [max(len(row[i]) for row in everything) for i in range(len(everything[0]))]
    for row in everything:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        sys.stdout.write("  ".join([*cells, row[-1]]) + "\n")


def details(message: Message) -> None:
    """Each field of `message` on its own line, `name: value`; lists one item a line."""
    value = to_json(message)
    for field in message.DESCRIPTOR.fields:
        if field.enum_type is pb.TaskStatus.DESCRIPTOR and not field.is_repeated:
            value[field.name] = statuses.label(getattr(message, field.name))
    width = max(len(name) for name in value) + 2
    for name, item in value.items():
        first, *rest = _lines(item) or ["-"]
        sys.stdout.write(f"{name + ':':<{width}}{first}\n")
        for line in rest:
            sys.stdout.write(f"{'':<{width}}{line}\n")


def _lines(item: Any) -> list[str]:
    if item is None:
        return ["-"]
    if isinstance(item, list):
        return [line for element in item for line in _lines(element)]
    if isinstance(item, dict):
        return [f"{safe(str(key))}={safe(str(val))}" for key, val in item.items()]
    if isinstance(item, bool):
        return [str(item).lower()]
    return safe_lines(str(item))
