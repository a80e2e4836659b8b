"""Reading a file confined to the project root, even while the tree changes under it.

A path checked first and opened afterwards can be redirected in between: swap
a directory for a symlink and the kernel follows it. So nothing here hands
the kernel a path of more than one component. The walk starts from a
descriptor of the root and opens each component relative to the descriptor
before it, with O_NOFOLLOW: a component that is a symlink at that instant
fails to open, and its target is walked here, by the same rules.

- `..` returns to the directory descriptor the walk came through (it never
  asks the kernel for a parent, which could have been moved outside); above
  the root it is refused.
- A symlink's relative target continues from the directory holding it; an
  absolute target is walked from the root if it lies under the root's path,
  and refused otherwise. At most MAX_SYMLINKS are followed.
- The file itself is looked at (lstat) before it is opened, so a FIFO or a
  device is refused without being opened, and the opened descriptor must be
  that same file (st_dev, st_ino): nothing swapped in between is read.
- A file with more than one hard link is refused: a hard link inside the root
  to a file outside it cannot be told from a file of the root's own.

Why not openat2(RESOLVE_BENEATH)? Python has no wrapper, so it would mean a
raw syscall through ctypes, with a per-architecture syscall number; kernels
before 5.6 and container seccomp profiles that predate it refuse it, so the
walk below would be needed anyway as the fallback. One path that is correct
alone is easier to trust than two. RESOLVE_BENEATH would also refuse every
absolute symlink, even one pointing inside the root, which the walk follows.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import pathlib
import stat

from rigger_server.errors import InvalidArgument, NotFound, PermissionDenied, quoted

# As Linux allows in one path resolution.
MAX_SYMLINKS = 40
# Directory levels below the root, each an open descriptor while walking.
MAX_DEPTH = 256

# O_PATH (Linux) opens a directory for lookups without needing read permission.
_DIR_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO swapped in at the last moment must not hang.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def _refused(field: str) -> PermissionDenied:
    # One message for every refusal: it reveals neither whether the target
    # exists nor what kind of file it is, nor where the project root lies.
    return PermissionDenied(
        f"{field}: must name a regular file inside the project root, reached without "
        "leaving it, with no other hard link"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class ConfinedFile:
    """A file read from inside the root: its text, and where the walk found it."""

    text: str
    # Relative to the root, symlinks resolved as the walk followed them: the
    # same for every path that reached this file, whatever changed afterwards.
    path: str


def read_confined(
    root: pathlib.Path, requested: str, *, field: str, max_bytes: int
) -> ConfinedFile:
    """Read the UTF-8 text file `requested` names, refusing anything outside `root`.

    `requested` is relative to `root`, or absolute under it. Raises
    InvalidArgument (empty path, a directory, too large, not UTF-8),
    NotFound, or PermissionDenied (outside the root, a special file, a file
    with several hard links). Messages name `field` and never the root.
    """
    if not requested.strip():
        raise InvalidArgument(field, "must not be empty")
    if "\x00" in requested:
        raise InvalidArgument(field, "must not contain NUL characters")
    path = pathlib.PurePosixPath(requested)
    if ".." in path.parts:
        raise _refused(field)
    root_path = pathlib.PurePosixPath(os.path.realpath(root))
    if path.is_absolute():
        parts = _beneath(root_path, path)
        if parts is None:
            raise _refused(field)
    else:
        parts = path.parts
    walk = _Walk(root, root_path, field, requested)
    data = walk.read(parts, max_bytes)
    try:
        return ConfinedFile(data.decode("utf-8-sig"), "/".join(walk.names))
    except UnicodeDecodeError as exc:
        raise InvalidArgument(field, f"file is not valid UTF-8 ({exc.reason})") from None


def _beneath(root: pathlib.PurePosixPath, path: pathlib.PurePosixPath) -> tuple[str, ...] | None:
    """The components of absolute `path` below `root`, compared as text; None if not under it."""
    if path.parts[: len(root.parts)] != root.parts:
        return None
    return path.parts[len(root.parts) :]


class _Walk:
    """One walk from the root: a stack of open directory descriptors, closed at the end."""

    def __init__(
        self, root: pathlib.Path, root_path: pathlib.PurePosixPath, field: str, requested: str
    ) -> None:
        self.root = root
        self.root_path = root_path
        self.field = field
        self.requested = requested
        # The names of the directories open on the stack below the root, then
        # the file's: the path the walk actually took.
        self.names: list[str] = []

    def _missing(self) -> NotFound:
        return NotFound(f"{self.field}: no such file: {quoted(self.requested)}")

    def read(self, parts: tuple[str, ...], max_bytes: int) -> bytes:
        stack = [os.open(self.root, _DIR_FLAGS & ~os.O_NOFOLLOW)]
        try:
            return self._walk(stack, parts, max_bytes)
        finally:
            for fd in stack:
                os.close(fd)

    def _walk(self, stack: list[int], parts: tuple[str, ...], max_bytes: int) -> bytes:
        pending = list(reversed(parts))  # next component last
        followed = 0
        while pending:
            name = pending.pop()
            if name in ("", ".", "/"):
                continue
            if name == "..":
                if len(stack) == 1:
                    raise _refused(self.field)
                os.close(stack.pop())
                self.names.pop()
                continue
            target = self._symlink(stack[-1], name)
            if target is not None:
                followed += 1
                if followed > MAX_SYMLINKS:
                    raise _refused(self.field)
                link = pathlib.PurePosixPath(target)
                if link.is_absolute():
                    below = _beneath(self.root_path, link)
                    if below is None:
                        raise _refused(self.field)
                    while len(stack) > 1:
                        os.close(stack.pop())
                    self.names.clear()
                    link_parts: tuple[str, ...] = below
                else:
                    link_parts = link.parts
                pending.extend(reversed(link_parts))
                continue
            if pending:
                stack.append(self._open_directory(stack[-1], name))
                self.names.append(name)
                if len(stack) > MAX_DEPTH:
                    raise _refused(self.field)
                continue
            data = self._read_file(stack[-1], name, max_bytes)
            self.names.append(name)
            return data
        # The path named a directory: the root itself, or one inside it.
        if len(stack) == 1:
            raise _refused(self.field)
        raise InvalidArgument(self.field, f"is a directory: {quoted(self.requested)}")

    def _symlink(self, directory: int, name: str) -> str | None:
        """The target if `name` in `directory` is a symlink now, else None."""
        try:
            return os.readlink(name, dir_fd=directory)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                return None  # exists, not a symlink
            raise self._os_error(exc) from None

    def _open_directory(self, directory: int, name: str) -> int:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=directory)
        except OSError as exc:
            # It became a symlink since we looked (ELOOP, or ENOTDIR with
            # O_DIRECTORY): not followed now. ENOTDIR for a file: no such path.
            if exc.errno == errno.ELOOP or (
                exc.errno == errno.ENOTDIR and not self._is_file(directory, name)
            ):
                raise _refused(self.field) from None
            raise self._os_error(exc) from None

    def _is_file(self, directory: int, name: str) -> bool:
        """True if `name` is now neither a directory nor a symlink (it did not just change)."""
        try:
            mode = os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode
        except OSError:
            return False
        return not (stat.S_ISDIR(mode) or stat.S_ISLNK(mode))

    def _read_file(self, directory: int, name: str, max_bytes: int) -> bytes:
        try:
            seen = os.stat(name, dir_fd=directory, follow_symlinks=False)
        except OSError as exc:
            raise self._os_error(exc) from None
        if stat.S_ISDIR(seen.st_mode):
            raise InvalidArgument(self.field, f"is a directory: {quoted(self.requested)}")
        self._check_file(seen, max_bytes)
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=directory)
        except OSError as exc:
            raise self._os_error(exc) from None
        with os.fdopen(fd, "rb") as handle:
            opened = os.fstat(fd)
            # What was checked is what was opened, and it is still a single-link
            # regular file (a hard link may have been added meanwhile).
            if (opened.st_dev, opened.st_ino) != (seen.st_dev, seen.st_ino):
                raise _refused(self.field)
            self._check_file(opened, max_bytes)
            data = handle.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise InvalidArgument(self.field, f"file is larger than {max_bytes} bytes")
        return data

    def _check_file(self, info: os.stat_result, max_bytes: int) -> None:
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise _refused(self.field)
        if info.st_size > max_bytes:
            raise InvalidArgument(self.field, f"file is larger than {max_bytes} bytes")

    def _os_error(self, exc: OSError) -> Exception:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return self._missing()
        if exc.errno in (errno.EACCES, errno.EPERM, errno.ELOOP, errno.EXDEV):
            return _refused(self.field)
        return exc  # a fault of the host (EIO, EMFILE...), not of the request
