"""watch_events() retries and waits exactly as the table in clients/README.md says."""

from __future__ import annotations

import pathlib
import re

import grpc
import pytest
from rigger_client import RETRYABLE, Backoff

CLIENTS_README = pathlib.Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"\| `(?P<code>[A-Z_]+)` \| (?P<retried>yes|no) \|")


def _documented() -> dict[str, bool]:
    rows = {}
    for line in CLIENTS_README.read_text(encoding="utf-8").splitlines():
        if match := ROW.match(line):
            rows[match["code"]] = match["retried"] == "yes"
    return rows


def test_the_table_names_every_status_code_once() -> None:
    assert sorted(_documented()) == sorted(code.name for code in grpc.StatusCode)


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda code: code.name)
def test_each_status_code_is_retried_as_documented(code: grpc.StatusCode) -> None:
    assert (code in RETRYABLE) == _documented()[code.name]


@pytest.mark.parametrize(
    ("retries", "draw", "seconds"),
    [
        (0, 0.0, 0.1),
        (0, 0.5, 0.09),
        (1, 0.0, 0.2),
        (3, 0.0, 0.8),
        (5, 0.0, 3.2),
        (6, 0.0, 5.0),
        (6, 0.5, 4.5),
        (10_000, 0.0, 5.0),
        (10_000, 0.999, 4.001),
    ],
)
def test_delays_double_from_100ms_to_5s_shortened_by_up_to_a_fifth(
    retries: int, draw: float, seconds: float
) -> None:
    assert Backoff().delay(retries, draw) == pytest.approx(seconds)


def test_an_event_resets_the_delay() -> None:
    backoff = Backoff()
    first = [backoff.next_delay() for _ in range(4)]
    backoff.reset()
    assert 0.08 < backoff.next_delay() <= 0.1
    assert all(0.8 * 0.1 * 2**n < delay <= 0.1 * 2**n for n, delay in enumerate(first))
