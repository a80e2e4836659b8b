"""parse_prd, in-process: what is read from a PRD, and how fast.

ParsePRD's own answers (title, objectives, tech stack, constraints) are pinned
by comparing the parser with the first implementation (markdown-it-py) on
generated documents; the rest is what the planner reads.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from rigger_server.errors import InvalidArgument
from rigger_server.prd import MAX_LINE_NESTING, SECTIONS, parse_prd

MIB = 1024 * 1024


def first_release_parse(markdown: str) -> tuple[str, tuple[str, ...], ...] | None:
    """The parser ParsePRD shipped with (markdown-it-py), as the reference."""
    tokens = MarkdownIt("commonmark").parse(markdown)
    title: str | None = None
    items: dict[str, list[str]] = {field: [] for field in SECTIONS.values()}
    section: str | None = None
    depth = 0
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            text = tokens[i + 1].content.strip()
            if token.tag == "h1" and title is None:
                title = text
            if token.tag in ("h1", "h2"):
                section = SECTIONS.get(text.lower()) if token.tag == "h2" else None
        elif token.type in ("bullet_list_open", "ordered_list_open"):
            depth += 1
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            depth -= 1
        elif token.type == "list_item_open" and depth == 1 and section is not None:
            for inner in tokens[i + 1 :]:
                if inner.type == "list_item_close" and inner.level == token.level:
                    break
                if inner.type == "inline":
                    text = " ".join(inner.content.split())
                    if text:
                        items[section].append(text)
                    break
    if not title:
        return None
    return (
        title,
        tuple(items["objectives"]),
        tuple(items["tech_stack"]),
        tuple(items["constraints"]),
    )


def parse_prd_answer(markdown: str) -> tuple[str, tuple[str, ...], ...] | None:
    try:
        parsed = parse_prd(markdown)
    except InvalidArgument:
        return None
    return (parsed.title, parsed.objectives, parsed.tech_stack, parsed.constraints)


FRAGMENTS = [
    "# Title", "# ", "#", "## Objectives", "## Tech Stack", "## constraints", "## Other",
    "### Objectives", "Title\n=====", "Sub\n---", "- item", "* star **bold** item",
    "+ plus `code` item", "1. one", "2) two", "- [ ] box", "- [x] done", "  - nested",
    "    - deeper", "   1. nested num", "", "> quote", "> - quoted item", "```\n# code\n```",
    "    indented code", "- a\n  continued line", "- a\\\n  b", "text paragraph",
    "<div>\nhtml\n</div>", "---", "***", "- ", "-", "- # heading item", "- ## Objectives",
    "  text under item", "- item with &amp; entity and \\* escape",
    "- [link](a.md) and ![i](b.png)", "-   spaced    item   ", "1.  x\n\n   para 2",
    "- a\n\n- b", "\t- tab item", "- é ünï 🚀", "- *emph\n  across* lines", "> - a\n> b",
    "- > quote in item", "-\n  text after an empty marker", "10. ten", "- <span>x</span>",
    "~~~\ncode\n~~~", "- ```\n  code\n  ```\n  after", "- Due: 2025-01-01 @bob (after #1)",
]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=14), st.booleans())
def test_parse_prd_answers_as_the_first_release_did(fragments, final_newline):
    markdown = "\n".join(fragments) + ("\n" if final_newline else "")
    assert parse_prd_answer(markdown) == first_release_parse(markdown)


# --- explicit tasks -------------------------------------------------------------

TASKS = """\
# Checkout

We rebuild checkout; see `docs/checkout.md`.

## Objectives

- Take payments
  - cards first

## Tasks

1. Design the payment schema in `db/schema.sql` — **Assignee:** Alice, Due: 2025-03-01
2. Build the payment API (after #1) @bob
   - write handlers
   - Due: 2025-04-01
   - [ ] load test
3. Document the API, depends on Build the payment API
4. Launch (depends on #2 and #3; blocked by "Design the payment schema")

## Notes

- [x] Pick a payment provider
- A plain note
"""


def test_items_of_a_tasks_section_are_tasks_in_order():
    tasks = parse_prd(TASKS).tasks
    assert [task.title for task in tasks] == [
        "Design the payment schema in `db/schema.sql`",
        "Build the payment API",
        "Document the API",
        "Launch",
        "Pick a payment provider",
    ]


def test_assignee_and_due_date_are_read_and_taken_out_of_the_title():
    first, second, *_ = parse_prd(TASKS).tasks
    assert (first.assignee, first.due_date) == ("Alice", "2025-03-01")
    assert second.assignee == "bob"


def test_a_nested_item_holding_only_metadata_is_metadata_not_a_step():
    second = parse_prd(TASKS).tasks[1]
    assert second.due_date == "2025-04-01"
    assert second.steps == ("write handlers", "load test")


def test_references_by_number_and_by_title_are_read():
    tasks = parse_prd(TASKS).tasks
    assert tasks[1].after == (1,)
    assert tasks[2].depends_on == ("Build the payment API",)
    assert tasks[3].after == (2, 3)
    assert tasks[3].depends_on == ("Design the payment schema",)


def test_a_checkbox_item_outside_a_tasks_section_is_a_task_and_a_checked_one_is_done():
    last = parse_prd(TASKS).tasks[-1]
    assert (last.title, last.done, last.section) == ("Pick a payment provider", True, "Notes")


def test_a_task_knows_its_line_and_the_paths_it_names():
    first = parse_prd(TASKS).tasks[0]
    assert first.line == 12
    assert first.paths == ("db/schema.sql",)


def test_steps_keep_document_order_at_any_depth():
    text = "# T\n\n## Tasks\n\n- Ship\n  - build\n    - compile\n  - [ ] test\n"
    assert parse_prd(text).tasks[0].steps == ("build", "compile", "test")


def test_a_checkbox_nested_in_a_plain_item_is_a_task_of_its_own():
    text = "# T\n\n## Notes\n\n- context\n  - [ ] Ask legal\n    - about cookies\n"
    parsed = parse_prd(text)
    assert [(t.title, t.steps) for t in parsed.tasks] == [("Ask legal", ("about cookies",))]
    assert parsed.items_of("notes")[0].steps == ()


def test_a_tasks_heading_at_level_3_opens_a_task_list_until_the_next_heading_as_high():
    text = "# T\n\n## Plan\n\n### Tasks\n\n- one\n- two\n\n### Risks\n\n- not a task\n"
    assert [task.title for task in parse_prd(text).tasks] == ["one", "two"]


def test_a_prd_without_task_lists_has_no_tasks_but_keeps_its_sections():
    parsed = parse_prd("# T\n\n## Objectives\n\n- Goal one\n  - a step\n- Goal two\n")
    assert parsed.tasks == ()
    (goal_one, goal_two) = parsed.items_of("objectives")
    assert (goal_one.text, goal_one.steps, goal_one.line) == ("Goal one", ("a step",), 5)
    assert goal_two.text == "Goal two"


def test_the_summary_is_the_first_paragraph_outside_lists():
    assert parse_prd(TASKS).summary == "We rebuild checkout; see `docs/checkout.md`."


@pytest.mark.parametrize(
    ("written", "found"),
    [
        ("see `server/app.py`", ["server/app.py"]),
        ("see `docs/` for more", ["docs/"]),
        ("edit server/rigger_server/prd.py now", ["server/rigger_server/prd.py"]),
        ("read [the guide](docs/guide.md#setup)", ["docs/guide.md"]),
        ("README.md and ./pyproject.toml.", ["README.md", "pyproject.toml"]),
        ("built with Node.js, e.g. this", []),
        ("see https://example.com/index.html", []),
        ("mail ops@example.com", []),
        ("client/server and/or TCP/IP", []),
    ],
)
def test_paths_are_the_words_that_name_files(written, found):
    assert list(parse_prd(f"# T\n\n{written}\n").paths) == found


def test_a_line_nested_deeper_than_the_limit_keeps_its_text():
    markers = "- " * (MAX_LINE_NESTING * 4)
    parsed = parse_prd(f"# T\n\n## Objectives\n\n{markers}deep\n")
    assert parsed.objectives == ("deep",)


# --- linear time ----------------------------------------------------------------


def fill(head: str, unit: str, tail: str = "") -> str:
    """`head`, then `unit` repeated, then `tail`: 1 MiB at most."""
    return head + unit * ((MIB - len(head) - len(tail)) // len(unit)) + tail


SHAPES = {
    "40k objectives": lambda: fill("# T\n\n## Objectives\n\n", "- objective item text\n"),
    "30k tasks with metadata": lambda: fill(
        "# T\n\n## Tasks\n\n", "- [ ] Do it @bob Due: 2025-01-02 (after #1)\n"
    ),
    "130k numbered tasks": lambda: fill("# T\n\n## Tasks\n\n", "1. step\n"),
    "nesting by indentation": lambda: (
        "# T\n\n## Objectives\n\n" + "".join("  " * i + "- x\n" for i in range(700))
    ),
    "nesting by markers": lambda: fill("# T\n\n## Objectives\n\n", "- ", "x\n"),
    "nested quotes": lambda: fill("# T\n\n", ">", "x\n"),
    "one huge paragraph": lambda: fill("# T\n\n", "word "),
    "200k headings": lambda: fill("# T\n\n", "## h\n"),
    "brackets": lambda: fill("# T\n\n", "["),
    "emphasis": lambda: fill("# T\n\n", "*a"),
    "paths": lambda: fill("# T\n\n", "src/a.py "),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_1_mib_prd_of_any_shape_parses_in_linear_time(shape):
    # The bound is generous on purpose (the target is < 1 s on a quiet
    # machine); quadratic behaviour on 1 MiB would take minutes.
    text = SHAPES[shape]()
    assert len(text.encode()) <= MIB
    started = time.process_time()
    parse_prd(text)
    assert time.process_time() - started < 5
