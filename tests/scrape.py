"""Reading a server's /metrics (`rig grpc --metrics-port`) as a test would: over HTTP, parsed.

Parsed with prometheus_client's own text-format parser. Every wait is
bounded; never a fixed sleep.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from testkit.serverproc import ServerProcess
from testkit.wait import wait_until

WAIT = 20.0
# A sample's name and its labels, sorted: the key of one series.
Series = tuple[str, tuple[tuple[str, str], ...]]


def metrics_port(server: ServerProcess) -> int:
    """The metrics port the server wrote to its ready file."""
    return int(json.loads(server.ready_path.read_text())["metrics_port"])


def fetch(port: int, token: str | None = None, path: str = "/metrics") -> tuple[int, str]:
    """GET the endpoint; its HTTP status and body."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(port: int, token: str | None = None) -> dict[Series, float]:
    """Every sample the endpoint serves, by series."""
    status, body = fetch(port, token)
    assert status == 200, f"/metrics answered {status}: {body[:200]}"
    samples: dict[Series, float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Series, float], name: str, **labels: str) -> float:
    """The value of one series (0 when the server has not created it)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def series_named(samples: dict[Series, float], name: str) -> list[Series]:
    """Every series of one sample name."""
    return [series for series in samples if series[0] == name]


def scrape_until(
    port: int,
    holds: Callable[[dict[Series, float]], bool],
    token: str | None = None,
    within: float = WAIT,
) -> dict[Series, float]:
    """Scrape until `holds(samples)`, and return those samples; fail after `within` seconds.

    A scrape turned away (the endpoint's connections are all taken) is tried again.
    """
    last: dict[Series, float] = {}

    def held() -> bool:
        nonlocal last
        try:
            last = scrape(port, token)
        except (ConnectionError, urllib.error.URLError):
            return False
        return holds(last)

    wait_until(held, "the metrics to show it", within=within, every=0.1)
    return last
