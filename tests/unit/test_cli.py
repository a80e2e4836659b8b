"""The `rig` command line's help, parsed in process."""

from __future__ import annotations

import dataclasses
import pathlib
import re

import pytest
from rigger_server.app import PortInUse, ServerConfig
from rigger_server.cli import LIMIT_FLAGS, _start_failed, build_parser, main, server_config
from rigger_server.limits import WITHOUT_FLAG, Limits
from rigger_server.planner import config_from_args

CONTRACT = pathlib.Path(__file__).parents[2] / "proto" / "rigger" / "v1" / "CONTRACT.md"


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


@pytest.mark.parametrize("asked", [0, 4711], ids=["port-0", "fixed-port"])
def test_a_port_in_use_is_named_by_the_port_tried_never_0(capsys, tmp_path, asked):
    config = ServerConfig(db_path=tmp_path / "tasks.db", project_root=tmp_path, port=asked)
    tried = asked or 4711
    assert _start_failed(PortInUse(f"127.0.0.1:{tried}", tried), config) == 1
    err = capsys.readouterr().err
    assert f"port {tried}" in err and "using port 0" not in err
    assert "--port" in err


def test_every_limit_has_a_flag_or_is_a_documented_constant():
    flagged = [field for _, field, _, _ in LIMIT_FLAGS]
    assert len(flagged) == len(set(flagged))
    assert not set(flagged) & WITHOUT_FLAG
    assert set(flagged) | WITHOUT_FLAG == {f.name for f in dataclasses.fields(Limits)}


def test_rig_grpc_without_flags_asks_for_the_default_server_config(tmp_path):
    args = build_parser().parse_args(["grpc"])
    planner = config_from_args(args)
    assert server_config(args, tmp_path / "tasks.db", tmp_path, planner) == ServerConfig(
        db_path=tmp_path / "tasks.db", project_root=tmp_path, planner=planner
    )


def test_the_defaults_are_the_documented_ones(tmp_path):
    # README's banner ("1000 event buffer"), ARCHITECTURE.md's eight turns,
    # and --grace's 5 seconds, written out.
    config = ServerConfig(db_path=tmp_path / "tasks.db", project_root=tmp_path)
    assert (config.host, config.buffer, config.batch_turns, config.grace_seconds) == (
        "localhost",
        1000,
        8,
        5.0,
    )
    [port] = re.findall(r"\*\*Defaults\.\*\* Port (\d+);", CONTRACT.read_text(encoding="utf-8"))
    assert config.port == int(port)
