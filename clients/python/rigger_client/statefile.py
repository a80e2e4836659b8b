"""A state file: the sequence of the last event a consumer handled, replaced atomically.

A consumer that records each event's sequence after handling it, and resumes
after the recorded one when it starts, loses nothing across its own restarts
and repeats at most the events it handled but had not recorded yet (at least
once). `rigger-sidecar --state-file` works this way; so can any program.

The file holds the sequence in decimal and a newline. Each save writes a new
file beside it and renames it over the old one, so a reader (or a consumer
killed mid-save) finds the old sequence or the new one, never a mix. Saves do
not fsync: the file survives the consumer's death, but after a machine crash
it may hold an older sequence (more repeats) or, on some file systems, be
empty, which `load()` refuses rather than guess.
"""

from __future__ import annotations

import os
import pathlib
import stat
import tempfile

from rigger_client.eventline import quote

MAX_BYTES = 64
"""The most a state file may hold: a uint64 is 20 digits; the rest is whitespace."""

_UINT64_LIMIT = 2**64
_WHITESPACE = " \t\r\n"


class StateFileError(Exception):
    """The state file cannot be used as it is; the message says why."""


class StateFile:
    """The state file at `path` (one consumer per file)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = pathlib.Path(path)

    def load(self) -> int | None:
        """The recorded sequence, or None when the file does not exist yet.

        Anything else that is not a sequence — a directory, a pipe, an empty
        or oversized file, other text — raises StateFileError: resuming from a
        guess could lose events or repeat the whole log.
        """
        try:
            # Non-blocking, so a FIFO put in the file's place cannot hang us;
            # it is refused below as not a regular file.
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateFileError(f"cannot be read: {_reason(exc)}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StateFileError("is not a regular file")
            data = b""
            while len(data) <= MAX_BYTES and (chunk := os.read(fd, MAX_BYTES + 1 - len(data))):
                data += chunk
        except OSError as exc:
            raise StateFileError(f"cannot be read: {_reason(exc)}") from None
        finally:
            os.close(fd)
        if len(data) > MAX_BYTES:
            raise StateFileError(f"holds more than a sequence (over {MAX_BYTES} bytes)")
        text = data.decode("ascii", errors="replace").strip(_WHITESPACE)
        if not text:
            raise StateFileError("is empty")
        if not (text.isascii() and text.isdigit()) or int(text) >= _UINT64_LIMIT:
            # Quoted, since the file may hold anything.
            shown = data.decode("utf-8", errors="replace").strip(_WHITESPACE)
            raise StateFileError(f"holds {quote(shown)}, not a sequence")
        return int(text)

    def check_writable(self) -> None:
        """Raise StateFileError unless a new state can be written beside the file."""
        try:
            fd, temporary = self._temporary()
        except OSError as exc:
            raise StateFileError(f"its directory cannot be written: {_reason(exc)}") from None
        os.close(fd)
        temporary.unlink()

    def save(self, sequence: int) -> None:
        """Record `sequence`: written to a new file beside the state file, renamed over it."""
        try:
            fd, temporary = self._temporary()
        except OSError as exc:
            raise StateFileError(f"cannot record #{sequence}: {_reason(exc)}") from None
        try:
            with os.fdopen(fd, "w", encoding="ascii") as file:
                file.write(f"{sequence}\n")
            temporary.replace(self.path)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise StateFileError(f"cannot record #{sequence}: {_reason(exc)}") from None

    def _temporary(self) -> tuple[int, pathlib.Path]:
        # A fresh name, created exclusively (never through a planted
        # symlink), in the same directory so the rename stays atomic.
        fd, name = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        return fd, pathlib.Path(name)


def _reason(exc: OSError) -> str:
    # "no such file or directory", as the Go and TypeScript sidecars say it.
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]
