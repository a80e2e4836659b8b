"""Facts each package must carry a copy of agree with the server's, the one source.

The server's version (`rig --version`, rigger_server.__version__, read by
hatchling for the `rigger` distribution) is the release's. The Python client
and the TypeScript package are built on their own, from their own
directories, so each writes the version down again; and each client's
sidecar dials the server's default port.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import tomllib

import pytest
from rigger_client.connect import DEFAULT_ADDRESS
from rigger_server import __version__
from rigger_server.app import ServerConfig

ROOT = pathlib.Path(__file__).parents[1]
DEFAULT_PORT = next(f.default for f in dataclasses.fields(ServerConfig) if f.name == "port")


def test_the_python_client_is_released_at_the_servers_version():
    project = tomllib.loads((ROOT / "clients/python/pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["version"] == __version__


def test_the_typescript_package_and_its_lock_are_at_the_servers_version():
    package = json.loads((ROOT / "clients/ts/package.json").read_text(encoding="utf-8"))
    lock = json.loads((ROOT / "clients/ts/package-lock.json").read_text(encoding="utf-8"))
    assert package["version"] == lock["version"] == lock["packages"][""]["version"] == __version__


def test_the_python_client_dials_the_servers_default_port():
    assert f"localhost:{DEFAULT_PORT}" == DEFAULT_ADDRESS


@pytest.mark.parametrize(
    "source", ["clients/go/cmd/rigger-sidecar/main.go", "clients/ts/src/sidecar.ts"]
)
def test_each_sidecar_dials_the_servers_default_port(source):
    text = (ROOT / source).read_text(encoding="utf-8")
    defaults = re.findall(r'"localhost:(\d+)"', text)
    assert defaults and set(defaults) == {str(DEFAULT_PORT)}
