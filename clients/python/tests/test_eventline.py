"""format_event prints the line every sidecar prints, byte for byte.

The cases are shared by the three clients: clients/testdata/event-lines.json
holds the events, event-lines.txt the exact bytes printed for each, one line
per case in the same order.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
from google.protobuf import json_format
from rigger.v1 import rigger_pb2 as pb
from rigger_client.eventline import format_event

TESTDATA = pathlib.Path(__file__).resolve().parents[2] / "testdata"


def _golden() -> list[tuple[str, dict[str, Any], bytes]]:
    cases = json.loads((TESTDATA / "event-lines.json").read_text(encoding="utf-8"))["cases"]
    lines = (TESTDATA / "event-lines.txt").read_bytes().split(b"\n")
    # Every line ends with a newline, so the last piece is empty.
    assert lines[-1] == b"", "event-lines.txt must end with a newline"
    assert len(lines) - 1 == len(cases), "one line in event-lines.txt per case"
    return [(c["name"], c["event"], line + b"\n") for c, line in zip(cases, lines, strict=False)]


GOLDEN = _golden()


@pytest.mark.parametrize(
    ("event", "expected"), [(e, line) for _, e, line in GOLDEN], ids=[n for n, _, _ in GOLDEN]
)
def test_each_event_prints_its_golden_line_byte_for_byte(
    event: dict[str, Any], expected: bytes
) -> None:
    message = json_format.Parse(json.dumps(event), pb.TaskEvent())
    assert (format_event(message) + "\n").encode("utf-8") == expected
