"""gRPC core's own log lines, held back while the server binds a port.

gRPC core logs through absl straight to file descriptor 2, past Python's
logging. A port another process holds makes `add_insecure_port` log
"add_port.cc:NN] Failed to add port to server: ..." before it raises, so a
user read core's line first and the server's own error, which names the fix,
after it. While a port is bound, fd 2 goes to a spool; afterwards every line
is written back in order except core's bind failures, which go to the debug
log (the server's error says the same, and what to do).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator

log = logging.getLogger(__name__)

# What marks core's line about a port it could not bind (its source file).
BIND_FAILURE = b"add_port.cc"


@contextlib.contextmanager
def bind_failures_held_back() -> Iterator[None]:
    """Run the block with fd 2 spooled; write it back after, without core's bind failures."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as spool:
            os.dup2(spool.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                spool.seek(0)
                _write_back(spool.read())
    finally:
        os.close(saved)


def _write_back(spooled: bytes) -> None:
    kept = []
    for line in spooled.splitlines(keepends=True):
        if BIND_FAILURE in line:
            log.debug("gRPC core: %s", line.decode(errors="replace").rstrip())
        else:
            kept.append(line)
    data = memoryview(b"".join(kept))
    while data:
        data = data[os.write(2, data) :]
