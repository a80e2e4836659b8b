"""Running a watch until it ends or the user stops it with SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from typing import Any


async def until_signalled(work: Coroutine[Any, Any, int]) -> int | None:
    """Run `work` to its end and return its result, or None once SIGINT or SIGTERM stops it.

    A signal cancels the work rather than killing the process, so that what
    it already printed or recorded stays consistent (a state file is never
    left half written).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    worker = asyncio.create_task(work)
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait((worker, stopper), return_when=asyncio.FIRST_COMPLETED)
    if worker.done():
        stopper.cancel()
        return worker.result()
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    return None
