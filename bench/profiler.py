"""py-spy on a server process: record collapsed stacks for a while, then rank functions.

Sampling from outside the process (no instrumentation inside it) keeps the
server's own timing honest; `--nonblocking` means py-spy never pauses it.
"""

from __future__ import annotations

import collections
import pathlib
import shutil
import signal
import subprocess
import types

_RATE = 250  # samples/s


class PySpy:
    """`with PySpy(pid, out):` records raw collapsed stacks of `pid` into `out`."""

    def __init__(self, pid: int, out: pathlib.Path, subprocesses: bool = False) -> None:
        self.pid = pid
        self.out = out
        self.subprocesses = subprocesses  # also sample the pid's children (worker processes)
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PySpy:
        exe = shutil.which("py-spy")
        if exe is None:
            raise RuntimeError("--profile needs py-spy on PATH (pip install py-spy)")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [
                *(exe, "record", "--pid", str(self.pid), "--rate", str(_RATE)),
                *("--nonblocking", "--format", "raw", "--output", str(self.out)),
                *(["--subprocesses"] if self.subprocesses else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _frame_name(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py)": one row per function.
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return f"{name} ({file})" if file else name


def summarize(raw: pathlib.Path, top: int = 30) -> str:
    """The functions with the most samples: self (innermost frame) and inclusive."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if total == 0:
        return f"{raw.name}: no samples\n"
    lines = [f"{raw.name}: {total} samples (non-idle threads)", "", "self %   function"]
    lines += [f"{100 * n / total:6.1f}   {name}" for name, n in own.most_common(top)]
    lines += ["", "incl %   function"]
    lines += [f"{100 * n / total:6.1f}   {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"
