"""The bench's compiled helpers are built quietly when they are there already."""

from __future__ import annotations

import pathlib
import stat

import pytest

from bench import binaries


@pytest.fixture
def fake_cargo(tmp_path, monkeypatch) -> pathlib.Path:
    """A `cargo` on PATH that 'builds' the ceiling by touching it; where it goes."""
    built = tmp_path / "target" / "release" / "rigger-ceiling-tonic"
    cargo = tmp_path / "bin" / "cargo"
    cargo.parent.mkdir()
    cargo.write_text(f"#!/bin/sh\nmkdir -p {built.parent} && touch {built}\n")
    cargo.chmod(cargo.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{cargo.parent}:/usr/bin:/bin")
    monkeypatch.setattr(binaries, "BUILD", tmp_path)
    monkeypatch.setattr(binaries, "CARGO_TARGET", tmp_path / "target")
    monkeypatch.setattr(binaries, "TONIC_CEILING", built)
    return built


def test_the_tonic_ceiling_is_announced_as_building_once(fake_cargo, capsys):
    # `nox -s bench` builds the helpers, then the harness asks for them again.
    assert binaries.tonic_ceiling().path == fake_cargo
    assert binaries.tonic_ceiling().path == fake_cargo
    assert capsys.readouterr().err.count("building the tonic ceiling") == 1
