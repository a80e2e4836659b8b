"""The workload matrix: which cells run, grouped by server kind and subscriber count.

A group is one fresh server and one set of subscriber streams; its cells run
one after another on the same open streams, so idle-stream memory is measured
once per group and stream setup is not paid per cell.
"""

from __future__ import annotations

import dataclasses

SATURATION = 0.0  # a rate of 0 means: writers as fast as the server answers
SMALL, LARGE = 250, 2000  # encoded TaskEvent size in bytes, about
# ~150 B titles, as in the Rust release's probe (its events are ~340 B encoded).
PROBE = 340
# Closed-loop writers in the saturation cells. With 4 the servers' loops idle
# between small batches; 16 keeps enough writes in flight to saturate them.
SATURATION_WRITERS = 16
# Large enough that no subscriber of the throughput matrix lags inside a cell,
# so the matrix measures fanout cost, not the lag policy (the slow cell does that).
MATRIX_BUFFER = 100_000
SLOW_BUFFER = 200  # small, so the stalled stream is cut off inside the cell

# The servers a group can run against: Rigger, the grpc.aio ceiling
# (bench/ceiling_server.py), the tonic ceiling (bench/ceiling-rs), and, with
# `--target`, a server someone else started.
RIGGER, AIO, TONIC, TARGET = "rigger", "aio", "tonic", "target"
CEILINGS = (AIO, TONIC)
ALL = (RIGGER, *CEILINGS)


@dataclasses.dataclass(frozen=True, slots=True)
class Cell:
    """One measurement: a write rate and payload against the group's subscribers."""

    rate: float  # events/s, or SATURATION
    payload: int
    seconds: float
    slow: bool = False  # add a subscriber that stops reading
    repeats: int = 1  # run this many times; the run with the median throughput is reported
    # Saturation only: each closed-loop writer on its own connection, AddTask
    # only, as the Rust release's probe wrote. Otherwise all writers share the
    # harness's one channel and alternate AddTask with UpdateTask.
    own_connections: bool = False
    idle: bool = False  # write nothing: the held streams' idle cost (CPU) only

    @property
    def rate_label(self) -> str:
        if self.idle:
            return "idle"
        if self.rate != SATURATION:
            return f"{self.rate:g}"
        return f"sat/{SATURATION_WRITERS}conn" if self.own_connections else "sat"


@dataclasses.dataclass(frozen=True, slots=True)
class Group:
    """Cells that share one server and one set of subscribers."""

    kinds: tuple[str, ...]
    n: int
    cells: tuple[Cell, ...]
    buffer: int = MATRIX_BUFFER
    max_deliveries: int = 200_000  # per cell: bounds the drain when N x rate is beyond reach
    batched: bool = False  # subscribers use SubscribeToTaskEventBatches
    workers: int = 1  # Rigger runs as `rig grpc --workers N` (the ceilings are always one process)

    @property
    def stream(self) -> str:
        return "batched" if self.batched else "plain"

    def workers_for(self, kind: str) -> int:
        """How many processes the server of `kind` runs as; the ceilings are always one."""
        return self.workers if kind == RIGGER else 1

    def workers_suffix(self, kind: str) -> str:
        """`-wN` when the server of `kind` runs as several processes, for names and logs."""
        workers = self.workers_for(kind)
        return f"-w{workers}" if workers > 1 else ""

    @property
    def processes(self) -> int:
        """Python subscriber processes: two cores, so two keep the client off one core."""
        return 1 if self.n == 1 else 2

    @property
    def channels(self) -> int:
        """Channels (TCP connections) per Python subscriber process.

        Many, as separate sidecars would have: the kernel spreads connections,
        not streams, over `rig grpc --workers N`, and a handful of connections
        would split unevenly. The Go pool opens processes x channels in one process.
        """
        if self.n < 10:
            return 1
        if self.n < 100:
            return 4
        if self.n == 100:
            return 16
        return 32 if self.n <= 1000 else 64

    @property
    def connections(self) -> int:
        """All subscriber connections of the group, whichever pool holds them."""
        return self.processes * min(self.channels, self.n)


_RATE_SECONDS = {10.0: 6.0, 100.0: 5.0, 1000.0: 4.0, SATURATION: 5.0}


def probe_cell(seconds: float, repeats: int = 1) -> Cell:
    """The Rust release's probe: 16 closed-loop AddTask writers, each on its own connection."""
    return Cell(SATURATION, PROBE, seconds, repeats=repeats, own_connections=True)


def full() -> list[Group]:
    """N = 1, 10, 100, 1000 x rates 10, 100, 1000, saturation x 250 B, 2 kB; the probe
    cell at N=1000, plain and batched; N=5000 idle and paced, 10 000 idle; the slow cell."""
    # Saturation is the noisiest figure on a shared 2-core box: run it three times.
    cells = tuple(
        Cell(rate, payload, seconds, repeats=3 if rate == SATURATION else 1)
        for payload in (SMALL, LARGE)
        for rate, seconds in _RATE_SECONDS.items()
    )
    groups = [Group(ALL, n, cells) for n in (1, 10, 100, 1000)]
    # 6 M deliveries: 10 s of 600 writes/s at N=1000, beyond the Rust release; bounded.
    probe = (probe_cell(10.0, repeats=3),)
    groups += [
        Group(ALL, 1000, probe, max_deliveries=6_000_000, batched=batched)
        for batched in (False, True)
    ]
    # 2 ev/s x 5000 streams is 10 000 deliveries/s: within every server's reach.
    idle = Cell(SATURATION, SMALL, 3.0, idle=True)
    groups += [
        Group(ALL, 5000, (idle, Cell(2.0, SMALL, 6.0))),
        Group(ALL, 10_000, (idle,)),
    ]
    return [*groups, slow_group(seconds=8.0, repeats=3, kinds=ALL)]


def quick() -> list[Group]:
    """A reduced matrix that still runs every code path, for CI: under 3 minutes."""
    cells = (Cell(100.0, SMALL, 2.0), Cell(SATURATION, SMALL, 2.0))
    groups = [Group(ALL, n, cells, max_deliveries=50_000) for n in (10, 100)]
    batched = Group(ALL, 100, cells[1:], max_deliveries=50_000, batched=True)
    workers = Group((RIGGER,), 100, cells, max_deliveries=50_000, workers=2)
    probe = Group(ALL, 1000, (probe_cell(3.0),), max_deliveries=2_000_000)
    return [*groups, batched, workers, probe, slow_group(seconds=4.0)]


def batches(repeats: int = 3) -> list[Group]:
    """Saturation at 250 B, N = 100 and 1000: the plain stream beside the batched one."""
    cells = (Cell(SATURATION, SMALL, 5.0, repeats=repeats),)
    return [Group(ALL, n, cells, batched=batched) for n in (100, 1000) for batched in (False, True)]


def target(quick: bool, batches: bool) -> list[Group]:
    """For `--target`: N = 10, 100, 1000 paced and saturated, and the probe cell at N=1000.

    With `batches` (the target has SubscribeToTaskEventBatches) the probe cell
    runs on the batched stream too. No slow-subscriber cell: it needs the
    server's buffer set small.
    """
    seconds = 2.0 if quick else 5.0
    cells = (Cell(100.0, SMALL, seconds), Cell(SATURATION, SMALL, seconds))
    groups = [Group((TARGET,), n, cells) for n in (10, 100, 1000)]
    probe = (probe_cell(3.0 if quick else 10.0),)
    groups += [
        Group((TARGET,), 1000, probe, max_deliveries=6_000_000, batched=batched)
        for batched in ((False, True) if batches else (False,))
    ]
    return groups


def with_workers(groups: list[Group], workers: int) -> list[Group]:
    """The same groups with Rigger run as `rig grpc --workers N`."""
    return [dataclasses.replace(g, workers=workers) for g in groups]


def without(groups: list[Group], kind: str) -> list[Group]:
    """The same groups without servers of `kind` (e.g. the tonic ceiling when cargo is missing)."""
    kept = [dataclasses.replace(g, kinds=tuple(k for k in g.kinds if k != kind)) for g in groups]
    return [g for g in kept if g.kinds]


def slow_group(seconds: float, repeats: int = 1, kinds: tuple[str, ...] = (RIGGER,)) -> Group:
    """N=100 at 100 events/s, 2 kB: the same cell without, then with, a stalled subscriber."""
    return Group(
        kinds,
        100,
        (
            Cell(100.0, LARGE, seconds, repeats=repeats),
            Cell(100.0, LARGE, seconds, slow=True, repeats=repeats),
        ),
        buffer=SLOW_BUFFER,
    )
