"""The `rig` command line's help, parsed in process."""

from __future__ import annotations

import pytest
from rigger_server.cli import main


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["--help"], ["init", "grpc"]),
        (["init", "--help"], [".rigger"]),
        (
            ["grpc", "--help"],
            ["--host", "--port", "--db", "--buffer", "--buffer-bytes", "--grace", "--workers"],
        ),
    ],
    ids=["rig", "init", "grpc"],
)
def test_help_exits_0_and_mentions_the_flags(capsys, args, mentions):
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for word in mentions:
        assert word in out, word


def test_a_limit_below_one_is_refused_before_anything_starts(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["grpc", "--max-subscribers", "0"])
    assert exited.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err
