"""The workload matrix: which cells run, grouped by server kind and subscriber count.

A group is one fresh server and one set of subscriber processes; its cells run
one after another on the same open streams, so idle-stream memory is measured
once per group and stream setup is not paid per cell.
"""

from __future__ import annotations

import dataclasses

SATURATION = 0.0  # a rate of 0 means: writers as fast as the server answers
SMALL, LARGE = 250, 2000  # encoded TaskEvent size in bytes, about
# Closed-loop writers in the saturation cells. With 4 the servers' loops idle
# between small batches; 16 keeps enough writes in flight to saturate them.
SATURATION_WRITERS = 16
# Large enough that no subscriber of the throughput matrix lags inside a cell,
# so the matrix measures fanout cost, not the lag policy (the slow cell does that).
MATRIX_BUFFER = 100_000
SLOW_BUFFER = 200  # small, so the stalled stream is cut off inside the cell


@dataclasses.dataclass(frozen=True, slots=True)
class Cell:
    """One measurement: a write rate and payload against the group's subscribers."""

    rate: float  # events/s, or SATURATION
    payload: int
    seconds: float
    slow: bool = False  # add a subscriber that stops reading
    repeats: int = 1  # run this many times; the run with the median throughput is reported

    @property
    def rate_label(self) -> str:
        return "sat" if self.rate == SATURATION else f"{self.rate:g}"


@dataclasses.dataclass(frozen=True, slots=True)
class Group:
    """Cells that share one server and one set of subscribers."""

    kinds: tuple[str, ...]
    n: int
    cells: tuple[Cell, ...]
    buffer: int = MATRIX_BUFFER
    max_deliveries: int = 200_000  # per cell: bounds the drain when N x rate is beyond reach
    batched: bool = False  # subscribers use SubscribeToTaskEventBatches
    workers: int = 1  # Rigger runs as `rig grpc --workers N` (the ceiling is always one process)

    @property
    def stream(self) -> str:
        return "batched" if self.batched else "plain"

    def workers_for(self, kind: str) -> int:
        """How many processes the server of `kind` runs as; the ceiling is always one."""
        return self.workers if kind == "rigger" else 1

    def workers_suffix(self, kind: str) -> str:
        """`-wN` when the server of `kind` runs as several processes, for names and logs."""
        workers = self.workers_for(kind)
        return f"-w{workers}" if workers > 1 else ""

    @property
    def processes(self) -> int:
        # Two cores: two subscriber processes keep the client side off one core.
        return 1 if self.n == 1 else 2

    @property
    def channels(self) -> int:
        """Channels (TCP connections) per subscriber process.

        Many, as separate sidecars would have: the kernel spreads connections,
        not streams, over `rig grpc --workers N`, and a handful of connections
        would split unevenly.
        """
        return 1 if self.n < 10 else 4 if self.n < 100 else 16 if self.n == 100 else 32


_RATE_SECONDS = {10.0: 6.0, 100.0: 5.0, 1000.0: 4.0, SATURATION: 5.0}


def full() -> list[Group]:
    """N = 1, 10, 100, 1000 x rates 10, 100, 1000, saturation x 250 B, 2 kB; plus the slow cell."""
    # Saturation is the noisiest figure on a shared 2-core box: run it three times.
    cells = tuple(
        Cell(rate, payload, seconds, repeats=3 if rate == SATURATION else 1)
        for payload in (SMALL, LARGE)
        for rate, seconds in _RATE_SECONDS.items()
    )
    groups = [Group(("rigger", "ceiling"), n, cells) for n in (1, 10, 100, 1000)]
    return [*groups, slow_group(seconds=8.0, repeats=3)]


def quick() -> list[Group]:
    """A reduced matrix that still runs every code path, for CI: well under 3 minutes."""
    cells = (Cell(100.0, SMALL, 2.0), Cell(SATURATION, SMALL, 2.0))
    groups = [Group(("rigger", "ceiling"), n, cells, max_deliveries=50_000) for n in (10, 100)]
    batched = Group(("rigger",), 100, cells[1:], max_deliveries=50_000, batched=True)
    workers = Group(("rigger",), 100, cells, max_deliveries=50_000, workers=2)
    return [*groups, batched, workers, slow_group(seconds=4.0)]


def batches(repeats: int = 3) -> list[Group]:
    """Saturation at 250 B, N = 100 and 1000: the plain stream beside the batched one."""
    cells = (Cell(SATURATION, SMALL, 5.0, repeats=repeats),)
    return [
        Group(("rigger",), n, cells, batched=batched)
        for n in (100, 1000)
        for batched in (False, True)
    ]


def with_workers(groups: list[Group], workers: int) -> list[Group]:
    """The same groups with Rigger run as `rig grpc --workers N`."""
    return [dataclasses.replace(g, workers=workers) for g in groups]


def slow_group(seconds: float, repeats: int = 1) -> Group:
    """N=100 at 100 events/s, 2 kB: the same cell without, then with, a stalled subscriber."""
    return Group(
        ("rigger",),
        100,
        (
            Cell(100.0, LARGE, seconds, repeats=repeats),
            Cell(100.0, LARGE, seconds, slow=True, repeats=repeats),
        ),
        buffer=SLOW_BUFFER,
    )
