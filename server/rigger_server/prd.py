"""PRD markdown: parsing it. Reading the file, confined to the project root, is `confined.py`.

Parsing reads the document once, as the event stream of a CommonMark pull
parser (pyromark, on pulldown-cmark), so its time grows linearly with the
size of the file whatever its shape. What a PRD may contain is described in
docs/planning.md ("Writing a PRD").
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Any, TypeVar

import pyromark

from rigger_server.errors import InvalidArgument

T = TypeVar("T")

# Section headings (level 2, compared case-insensitively) and the field each fills.
SECTIONS = {"objectives": "objectives", "tech stack": "tech_stack", "constraints": "constraints"}

# Headings (any level from 2, compared case-insensitively, a trailing colon
# ignored) whose top-level list items are explicit tasks.
TASK_HEADINGS = frozenset({"tasks", "task list", "todo", "to do", "to-do"})


@dataclasses.dataclass(frozen=True, slots=True)
class PrdItem:
    """A top-level list item of a section, and what is written inside it."""

    # Its first paragraph as written (markdown kept), whitespace collapsed.
    text: str
    # 1-based line of the item's marker.
    line: int = 0
    # The texts of the items nested in it (at any depth), in order.
    steps: tuple[str, ...] = ()
    # Its further paragraphs.
    details: tuple[str, ...] = ()
    # File paths it names (see `PATH_EXTENSIONS`), in order, once each.
    paths: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class PrdSection:
    """A level-2 heading and the top-level list items under it."""

    heading: str
    items: tuple[PrdItem, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class PrdTask:
    """An explicit task of a PRD: an item of a Tasks list, or a checkbox item.

    Its metadata is read from its first paragraph, and from nested items that
    hold nothing else (`- Due: 2025-03-01`); `title` is what remains.
    """

    title: str
    # The first paragraph as written, checkbox removed, whitespace collapsed.
    text: str
    line: int
    # The level-2 section it is in ("" before the first).
    section: str = ""
    assignee: str | None = None
    # As written after `Due:`; the planner checks that it is a YYYY-MM-DD date.
    due_date: str | None = None
    # `after #2`, `depends on #1 and #3`, `blocked by #4`: 1-based task numbers.
    after: tuple[int, ...] = ()
    # `depends on <title>`, `after "<title>"`: titles of other tasks.
    depends_on: tuple[str, ...] = ()
    steps: tuple[str, ...] = ()
    details: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    # A checked box: `- [x]`.
    done: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedPrd:
    """What a PRD says.

    The first four fields are what ParsePRD returns: the title and the
    top-level list items of the known sections. The others serve the planner;
    they default to empty so that a PRD stored with only the first four can
    still be planned from.
    """

    title: str
    objectives: tuple[str, ...]
    tech_stack: tuple[str, ...]
    constraints: tuple[str, ...]
    # The first paragraph outside lists and quotes (usually the introduction).
    summary: str = ""
    # Every level-2 section in order, with its items (the known ones too).
    sections: tuple[PrdSection, ...] = ()
    # Explicit tasks, in document order; `#N` in a reference is the N-th.
    tasks: tuple[PrdTask, ...] = ()
    # Every file path the document names, in order, once each.
    paths: tuple[str, ...] = ()

    def items_of(self, heading: str) -> tuple[PrdItem, ...]:
        """The items of every section with this heading (case-insensitive)."""
        wanted = heading.lower()
        return tuple(
            item
            for section in self.sections
            if section.heading.lower() == wanted
            for item in section.items
        )


# --- parsing -------------------------------------------------------------------

# A bare word is a file path when it ends in one of these extensions; in a
# code span or a link target a word with a `/` is a path too.
_EXTENSIONS = """
    py pyi md rst txt toml yaml yml json proto go mod rs ts tsx js jsx mjs cjs java kt c h cc
    cpp hpp cs rb php swift sh bash sql html css scss ini cfg conf lock xml csv ipynb graphql tf
"""
PATH_EXTENSIONS = frozenset(_EXTENSIONS.split())
_MAX_PATH = 300
# Runs of characters a path is made of; each run is looked at once.
_PATH_RUN = re.compile(r"[\w~][\w./~-]*")
_URL_LIKE = re.compile(r"^[a-zA-Z][\w+.-]*:|^www\.|@|^#")

_INLINE_CONTAINERS = frozenset(
    {"Emphasis", "Strong", "Strikethrough", "Superscript", "Subscript", "Link", "Image"}
)
_INLINE_LEAVES = frozenset(
    {"Text", "Code", "InlineHtml", "InlineMath", "DisplayMath", "FootnoteReference"}
)


def parse_prd(markdown: str) -> ParsedPrd:
    """Parse a PRD: title, known sections, explicit tasks, paths.

    The title is the first level-1 heading. Section items are the top-level
    list items (`-`, `*`, `+`, `1.`, `1)`) under a level-2 heading; nested
    items belong to their parent item and are not listed separately. An
    item's text is its first paragraph as written, whitespace collapsed.
    """
    return _Reader(markdown).read()


# Characters that can make inline markdown; text without any is plain already.
_INLINE_MARKUP = re.compile(r"[`*_\[\]!<>&\\~]")


def plain_text(inline: str) -> str:
    """Inline markdown reduced to its text: code spans, emphasis, links and images.

    "Resume `watch.py` **now**" becomes "Resume watch.py now"; HTML tags
    are dropped, escapes and entities resolved, whitespace collapsed. Text
    that is no inline markdown is returned as it is.
    """
    if not _INLINE_MARKUP.search(inline):
        return " ".join(inline.split())
    # A leading letter keeps a line that looks like a heading, a list item or
    # a quote (`1. First`, `# 1`, `> x`) a paragraph of text.
    pieces: list[str] = []
    # As in _Reader.read: the events are read as plain Python values.
    events: Iterable[Any] = pyromark.events("x " + inline, merge_text=True)
    for event in events:
        if type(event) is str:  # SoftBreak, HardBreak
            pieces.append(" ")
            continue
        ((kind, value),) = event.items()
        if kind in ("Text", "Code"):
            pieces.append(str(value))
    text = " ".join("".join(pieces).split())
    return text.removeprefix("x").strip() or " ".join(inline.split())


def _path_of(word: str, loose: bool) -> str | None:
    """`word` as a file path, or None. `loose`: any word with a `/` counts."""
    word = word.strip().rstrip(".,;:").removeprefix("./")
    if (
        not word
        or len(word) > _MAX_PATH
        or _URL_LIKE.search(word)
        or any(c.isspace() for c in word)
    ):
        return None
    word = word.split("#", 1)[0].split("?", 1)[0]
    stem, dot, extension = word.rpartition(".")
    if dot and extension.lower() in PATH_EXTENSIONS and stem and not stem.endswith("/"):
        # "Node.js" and friends are names of things, not files.
        if extension == "js" and "/" not in word and stem[:1].isupper():
            return None
        return word
    if loose and "/" in word and word.strip("/") and not word.startswith("//"):
        return word
    return None


def _paths_in_text(text: str) -> list[str]:
    found = []
    for word in text.split():
        if "." not in word or "://" in word or "@" in word:
            continue
        for run in _PATH_RUN.findall(word):
            path = _path_of(run, loose=False)
            if path:
                found.append(path)
    return found


class _Open:
    """A list item being read."""

    __slots__ = (
        "checked",
        "depth",
        "details",
        "in_task",
        "kept",
        "line",
        "owner",
        "paths",
        "section",
        "section_field",
        "step",
        "steps",
        "task_list",
        "text",
    )

    def __init__(self, depth: int, section: _Section | None) -> None:
        self.depth = depth
        self.section = section
        self.text: str | None = None
        self.checked: bool | None = None
        # Where nested content goes: this item if it is kept (top-level or a
        # task), else the nearest kept ancestor.
        self.owner: _Open | None = None
        # A top-level item (kept as a PrdItem of its section).
        self.kept = False
        # A top-level item of a Tasks list.
        self.task_list = False
        # Inside an item that is a task.
        self.in_task = False
        self.line = 0
        self.section_field: str | None = None
        # Its place in its owner's steps, held from the start so that steps
        # stay in document order though inner items end first.
        self.step = -1
        self.steps: list[str] = []
        self.details: list[str] = []
        self.paths: list[str] = []

    @property
    def is_task(self) -> bool:
        """A top-level item of a Tasks list, or a checkbox item outside any task."""
        return self.task_list or (self.checked is not None and not self.in_task)

    def holder(self) -> _Open | None:
        """The item that collects what is written inside this one."""
        return self if self.kept or self.is_task else self.owner


class _Section:
    __slots__ = ("heading", "items")

    def __init__(self, heading: str) -> None:
        self.heading = heading
        self.items: list[PrdItem] = []


class _Reader:
    """One pass over the parser's events, keeping only what a PRD needs."""

    def __init__(self, markdown: str) -> None:
        self.markdown = _flatten_deep_nesting(markdown)
        self.src = self.markdown.encode()
        self.title: str | None = None
        self.fields: dict[str, list[str]] = {field: [] for field in SECTIONS.values()}
        self.field: str | None = None
        self.section: _Section | None = None
        self.sections: list[_Section] = []
        self.tasks_level: int | None = None
        self.tasks: list[PrdTask] = []
        self.paths: list[str] = []
        self.summary = ""
        self.items: list[_Open] = []
        self.list_depth = 0
        self.quote_depth = 0
        self.heading_level = 0
        self.heading_read = False
        # Line numbers are counted forward as the events go.
        self.line = 1
        self.line_pos = 0

    def _line_at(self, pos: int) -> int:
        if pos > self.line_pos:
            self.line += self.src.count(b"\n", self.line_pos, pos)
            self.line_pos = pos
        return self.line

    def _add_paths(self, found: list[str]) -> None:
        if not found:
            return
        self.paths.extend(found)
        if self.items:
            holder = self.items[-1].holder()
            if holder is not None:
                holder.paths.extend(found)

    def read(self) -> ParsedPrd:
        """Walk the events once. The loop is the parser's hot path: keep it flat."""
        src = self.src
        # The inline run being collected: raw source pieces of one paragraph,
        # heading or tight item. Gaps between pieces are kept, except after a
        # line break, where the gap is a line prefix (indent, `>`); a
        # heading keeps those too (its text is stripped, not collapsed).
        parts: list[bytes] = []
        collecting = False
        end = 0
        broke = False
        nested = 0  # depth inside an inline container whose whole source was taken
        in_code = False
        # pyromark's event union is too loose for the checker to follow the
        # type tests below: the loop reads events as plain Python values.
        events: Iterable[tuple[Any, Any]] = pyromark.events_with_range(
            self.markdown, options=pyromark.Options.ENABLE_TASKLISTS, merge_text=True
        )
        for event, span in events:
            if type(event) is str:  # SoftBreak, HardBreak, Rule
                if event == "Rule":
                    if collecting:
                        collecting = False
                        self._finish_run(b"".join(parts))
                elif collecting and not nested:
                    parts.append(src[span["start"] : span["end"]])
                    end = span["end"]
                    broke = True
                continue
            ((kind, value),) = event.items()
            if kind == "Start" or kind == "End":
                tag = value if type(value) is str else next(iter(value))
                if tag in _INLINE_CONTAINERS:
                    if kind == "End":
                        nested -= 1
                        continue
                    if tag == "Link" or tag == "Image":
                        path = _path_of(value[tag]["dest_url"], loose=True)
                        if path:
                            self._add_paths([path])
                    if nested:
                        nested += 1
                        continue
                elif tag == "CodeBlock":
                    in_code = kind == "Start"
                    if collecting:
                        collecting = False
                        self._finish_run(b"".join(parts))
                    continue
                else:
                    if collecting:
                        collecting = False
                        self._finish_run(b"".join(parts))
                    self._block(kind == "Start", tag, value, span["start"])
                    continue
            elif in_code or kind == "Html":
                continue
            elif kind == "Text":
                if "." in value:
                    self._add_paths(_paths_in_text(value))
            elif kind == "Code":
                path = _path_of(value, loose=True)
                if path:
                    self._add_paths([path])
            elif kind == "TaskListMarker" and self.items:
                item = self.items[-1]
                item.checked = value
                item.line = self._line_at(span["start"])
            if nested:
                continue
            start = span["start"]
            if not collecting:
                collecting = True
                parts = [src[start : span["end"]]]
            else:
                if start > end and (not broke or self.heading_level):
                    parts.append(src[end:start])
                parts.append(src[start : span["end"]])
            end = span["end"]
            broke = False
            if kind == "Start":  # an inline container: its whole source was taken
                nested = 1
        if collecting:
            self._finish_run(b"".join(parts))
        return self._result()

    def _block(self, opening: bool, tag: str, value: object, start: int) -> None:
        if tag == "Item":
            if opening:
                self._open_item(start)
            else:
                self._close_item()
        elif tag == "List":
            self.list_depth += 1 if opening else -1
        elif tag == "Heading":
            if opening:
                self.heading_level = int(value["Heading"]["level"][1])  # type: ignore[index]
                self.heading_read = False
            else:
                if not self.heading_read:
                    self._heading(self.heading_level, "")
                self.heading_level = 0
        elif tag == "BlockQuote":
            self.quote_depth += 1 if opening else -1

    def _finish_run(self, raw: bytes) -> None:
        text = raw.decode()
        if self.heading_level:
            self.heading_read = True
            self._heading(self.heading_level, text.strip())
            # A heading is an item's first paragraph too (`- # Title`).
            if not self.items or self.items[-1].text is not None:
                return
        text = " ".join(text.split())
        if self.items:
            item = self.items[-1]
            if item.text is None:
                item.text = text
            elif text:
                holder = item.holder()
                if holder is not None:
                    holder.details.append(text)
        elif not self.summary and not self.quote_depth and text:
            self.summary = text

    def _heading(self, level: int, text: str) -> None:
        if level == 1 and self.title is None:
            self.title = text
        lowered = text.lower()
        if level == 2:
            self.field = SECTIONS.get(lowered)
            self.section = _Section(text)
            self.sections.append(self.section)
        elif level == 1:
            self.field = None
            self.section = None
        name = lowered.rstrip(":").strip()
        if level >= 2 and name in TASK_HEADINGS:
            self.tasks_level = level
        elif self.tasks_level is not None and level <= self.tasks_level:
            self.tasks_level = None

    def _open_item(self, start: int) -> None:
        item = _Open(self.list_depth, self.section)
        if self.items:
            parent = self.items[-1]
            item.in_task = parent.in_task or parent.is_task
            item.owner = parent.holder()
            if item.owner is not None:
                item.step = len(item.owner.steps)
                item.owner.steps.append("")
        else:
            # Only a top-level item (one list deep) has no open parent.
            item.kept = True
            item.task_list = self.tasks_level is not None
            item.line = self._line_at(start)
            item.section_field = self.field
        self.items.append(item)

    def _close_item(self) -> None:
        item = self.items.pop()
        parent = self.items[-1] if self.items else None
        text = item.text or ""
        if parent is not None and parent.text is None and text:
            # As CommonMark reads `- - x`: the outer item's first paragraph
            # is the inner one's.
            parent.text = text
        if not text:
            return
        if item.kept:
            if item.section_field is not None:
                self.fields[item.section_field].append(text)
            if item.section is not None:
                item.section.items.append(
                    PrdItem(
                        text=text,
                        line=item.line,
                        steps=tuple(filter(None, item.steps)) if item.steps else (),
                        details=tuple(item.details),
                        paths=_unique(item.paths),
                    )
                )
        if item.is_task:
            self.tasks.append(_task(item, text))
        elif item.owner is not None:
            own = _CHECKBOX.sub("", text, count=1) if item.checked is not None else text
            item.owner.steps[item.step] = own

    def _result(self) -> ParsedPrd:
        if not self.title:
            raise InvalidArgument("prd_file_path", "the PRD has no '# Title' heading")
        return ParsedPrd(
            title=self.title,
            objectives=tuple(self.fields["objectives"]),
            tech_stack=tuple(self.fields["tech_stack"]),
            constraints=tuple(self.fields["constraints"]),
            summary=self.summary,
            sections=tuple(PrdSection(s.heading, tuple(s.items)) for s in self.sections),
            tasks=tuple(self.tasks),
            paths=_unique(self.paths),
        )


# Containers (list items, quotes) nested deeper than this on one line are
# flattened into the innermost one kept: no PRD nests so deep, and a line of a
# million `- ` or `>` would otherwise cost a million events.
MAX_LINE_NESTING = 32
_MARKER = r"(?:>|[-*+](?=[ \t]|$)|\d{1,9}[.)](?=[ \t]|$))[ \t]*"
_DEEP_LINE = re.compile(rf"^([ \t]*(?:{_MARKER}){{{MAX_LINE_NESTING}}})(?:{_MARKER})+", re.M)


# A line that deep holds at least this run of marker characters; looking for
# the run first keeps ordinary documents off the slower pattern.
_MARKER_RUN = re.compile(rf"[-*+>\d.)][-*+>\d.) \t]{{{MAX_LINE_NESTING},}}")


def _flatten_deep_nesting(markdown: str) -> str:
    if not _MARKER_RUN.search(markdown):
        return markdown
    return _DEEP_LINE.sub(r"\1", markdown)


# --- task metadata --------------------------------------------------------------

_CHECKBOX = re.compile(r"^\[[ xX]\]\s*")
# Every kind of metadata holds one of these: most items hold none.
_ANY_META = re.compile(r"assignee|owner|@|due|after|depends|blocked", re.I)
_BOLD = r"(?:\*\*|__|\*|_)?"
_ASSIGNEE_KEY = re.compile(rf"{_BOLD}\b(?:assignee|owner){_BOLD}\s*:\s*{_BOLD}\s*", re.I)
# Where a name written after `Assignee:` ends.
_NAME_END = re.compile(
    r"\s*(?:[,;|()\[\]*]|\s[-\u2013\u2014]\s|\s(?:due|depends|after|blocked)\b|\s@|$)", re.I
)
_MENTION = re.compile(r"(?<![\w\\@])@(\w[\w.-]*)")
_DUE_KEY = re.compile(
    rf"{_BOLD}\bdue(?:\s+date)?{_BOLD}\s*:\s*{_BOLD}\s*([^\s,;|()\[\]*]+)"
    r"|\bdue\s+(?:on\s+|by\s+)?(\d{4}-\d{2}-\d{2})\b",
    re.I,
)
_NUMBER_REFS = re.compile(
    r"\b(?:after|depends\s+on|blocked\s+by)\s*:?\s*(#\d+(?:\s*(?:,|and|&|\+)\s*#\d+)*)", re.I
)
_NUMBER = re.compile(r"#(\d+)")
_QUOTED_REF = re.compile(
    r"\b(?:after|depends\s+on|blocked\s+by)\s*:?\s*"
    r"(?:\"([^\"]+)\"|\u201c([^\u201d]+)\u201d|`([^`]+)`|\*\*([^*]+)\*\*|\*([^*]+)\*)",
    re.I,
)
_BARE_REF = re.compile(r"\bdepends\s+on\b(?!\s*:?\s*[#\"\u201c`*])\s*:?\s*", re.I)
_TITLE_END = re.compile(
    r"[;)\]]|\.(?:\s|$)|,\s*(?:due|@|assignee|owner)|\s[-\u2013\u2014]\s"
    r"|\s(?:due|assignee|owner)\b\s*:?|\s@|$",
    re.I,
)
_EMPTY_BRACKETS = re.compile(r"[(\[][\s,;:|\u2013\u2014-]*[)\]]")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,;:.])")
# A run of separators left where metadata was taken out keeps its last one.
_REPEATED_SEPARATORS = re.compile(
    r"[,;:|\u2013\u2014-](?:\s*[,;:|\u2013\u2014-])*\s*([.,;:|\u2013\u2014-])"
)
_EDGE = " ,;:|*_\u2013\u2014-"


@dataclasses.dataclass(slots=True)
class _Meta:
    assignee: str | None = None
    due: str | None = None
    after: list[int] = dataclasses.field(default_factory=list)
    titles: list[str] = dataclasses.field(default_factory=list)


def _read_meta(text: str, meta: _Meta) -> str:
    """Take the metadata out of `text` into `meta`; return what remains."""
    if not _ANY_META.search(text):
        return text
    spans: list[tuple[int, int]] = []
    # Cheap word tests first: most items hold no metadata at all.
    lowered = text.lower()
    key = ("assignee" in lowered or "owner" in lowered) and _ASSIGNEE_KEY.search(text)
    if key:
        stop = _NAME_END.search(text, key.end())
        name = text[key.end() : stop.start()].strip(_EDGE) if stop else ""
        if name and len(name) <= 100:
            meta.assignee = meta.assignee or name
            end = stop.start() if stop else len(text)
            while end < len(text) and text[end] in "*_":
                end += 1
            spans.append((key.start(), end))
    mention = "@" in text and _MENTION.search(text)
    if mention and meta.assignee is None:
        meta.assignee = mention.group(1).rstrip(".-")
        spans.append((mention.start(), mention.start() + 1 + len(meta.assignee)))
    due = "due" in lowered and _DUE_KEY.search(text)
    if due:
        meta.due = meta.due or (due.group(1) or due.group(2)).strip("*_")
        spans.append(due.span())
    if "after" not in lowered and "depends" not in lowered and "blocked" not in lowered:
        return _without(text, spans)
    for refs in _NUMBER_REFS.finditer(text):
        meta.after.extend(int(n) for n in _NUMBER.findall(refs.group(1)))
        spans.append(refs.span())
    for quoted in _QUOTED_REF.finditer(text):
        meta.titles.append(next(g for g in quoted.groups() if g is not None).strip())
        spans.append(quoted.span())
    for bare in _BARE_REF.finditer(text):
        stop = _TITLE_END.search(text, bare.end())
        end = stop.start() if stop else len(text)
        title = text[bare.end() : end].strip(_EDGE)
        if title:
            meta.titles.append(title)
            spans.append((bare.start(), end))
    return _without(text, spans)


def _without(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with the metadata spans cut out and the punctuation they leave tidied."""
    if not spans:
        return text
    kept, position = [], 0
    for start, end in sorted(spans):
        if start >= position:
            kept.append(text[position:start])
        position = max(position, end)
    kept.append(text[position:])
    rest = " ".join(" ".join(kept).split())
    rest = _EMPTY_BRACKETS.sub("", rest)
    rest = _SPACE_BEFORE_PUNCT.sub(r"\1", rest)
    rest = _REPEATED_SEPARATORS.sub(r"\1", rest)
    return _trimmed(" ".join(rest.split()))


_SEPARATORS = " ,;:|\u2013\u2014-"
_TRAILING_MARKS = re.compile(r"[*_]+$")
_LEADING_MARKS = re.compile(r"^[*_]+")


def _trimmed(text: str) -> str:
    """`text` without the separators and emphasis marks a cut left at its ends.

    A mark closing an emphasis opened inside the text (`Write the _notes_`)
    is the title's own and stays.
    """
    while True:
        before = text
        text = text.strip(_SEPARATORS)
        end = _TRAILING_MARKS.search(text)
        if end and end.group() not in text[: end.start()]:
            text = text[: end.start()]
        start = _LEADING_MARKS.match(text)
        if start and start.group() not in text[start.end() :]:
            text = text[start.end() :]
        if text == before:
            return text


def _unique(values: list[T]) -> tuple[T, ...]:
    """`values` in order, each once."""
    return tuple(dict.fromkeys(values)) if values else ()


def _task(item: _Open, text: str) -> PrdTask:
    text = _CHECKBOX.sub("", text, count=1) if item.checked is not None else text
    meta = _Meta()
    title = _read_meta(text, meta)
    steps: list[str] = []
    for step in filter(None, item.steps) if item.steps else ():
        # A nested item that holds only metadata (`- Due: 2025-03-01`) is
        # metadata, not a step; the first paragraph's metadata comes first.
        found = _Meta()
        if _read_meta(step, found):
            steps.append(step)
            continue
        meta.assignee = meta.assignee or found.assignee
        meta.due = meta.due or found.due
        meta.after += found.after
        meta.titles += found.titles
    return PrdTask(
        title=title or text,
        text=text,
        line=item.line,
        section=item.section.heading if item.section else "",
        assignee=meta.assignee,
        due_date=meta.due,
        after=_unique(meta.after),
        depends_on=_unique(meta.titles),
        steps=tuple(steps),
        details=tuple(item.details),
        paths=_unique(item.paths),
        done=bool(item.checked),
    )
