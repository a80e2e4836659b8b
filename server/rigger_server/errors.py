"""Domain errors. The service maps each to one gRPC status code."""

from __future__ import annotations


class RiggerError(Exception):
    """Base of every error the service answers with its own code and message; never a bug."""


class InvalidArgument(RiggerError):
    """A request field is malformed. The message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(RiggerError):
    """The named task, PRD or file does not exist."""


class VersionConflict(RiggerError):
    """The task is no longer at the version the caller expected."""


class PermissionDenied(RiggerError):
    """The caller asked for something outside what it may touch (e.g. a path outside the root)."""


class ResourceExhausted(RiggerError):
    """A server limit is reached (e.g. too many subscriber streams)."""


class Unavailable(RiggerError):
    """The server cannot serve the call now (shutting down, storage unavailable)."""


class StoreFault(RiggerError):
    """Storage cannot do what was asked (full, locked, gone): nothing was written.

    The message is ours and safe to send; what the storage said is the
    exception's cause, for the server log only.
    """


class DiskFull(StoreFault, ResourceExhausted):
    """The disk holding the database is full."""


class StoreUnavailable(StoreFault, Unavailable):
    """The database cannot be used right now: locked by another process, unreadable, read-only."""


class StoreGone(StoreUnavailable):
    """The database file was deleted or replaced while the server held it open.

    Writes would go to a file nobody will open again, so every write is
    refused until the server restarts on the file now at the path.
    """
