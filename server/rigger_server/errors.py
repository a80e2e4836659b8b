"""Domain errors. The service maps each to one gRPC status code."""

from __future__ import annotations

from rigger_server.limits import QUOTED_CHARS


def quoted(value: str, limit: int = QUOTED_CHARS) -> str:
    """`value` quoted for an error message: whole if short, else its first `limit` characters.

    Messages quote ids, titles and paths that a request, a PRD or a model
    chose, and those may be megabytes long; a message that long would not
    reach the client at all (see service.py). The cut is marked, with the
    value's length.
    """
    if len(value) <= limit:
        return repr(value)
    cut = value[:limit] + "\u2026"
    return f"{cut!r} ({len(value)} characters)"


class RiggerError(Exception):
    """Base of every error the service answers with its own code and message; never a bug."""


class InvalidArgument(RiggerError):
    """A request field is malformed. The message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(RiggerError):
    """The named task, PRD or file does not exist."""


class AlreadyExists(RiggerError):
    """What the call would create exists already (e.g. the tasks of a PRD)."""


class VersionConflict(RiggerError):
    """The task is no longer at the version the caller expected."""


class Unauthenticated(RiggerError):
    """The call's token is not accepted (e.g. revoked by a rotation while the call was open)."""


class PermissionDenied(RiggerError):
    """The caller asked for something outside what it may touch (e.g. a path outside the root)."""


class ResourceExhausted(RiggerError):
    """A server limit is reached (e.g. too many subscriber streams)."""


class Unavailable(RiggerError):
    """The server cannot serve the call now: it is shutting down, or its database
    or a service it needs (Ollama) is unreachable."""


class FailedPrecondition(RiggerError):
    """The call cannot run in the present state (e.g. the model is not pulled)."""


class EventTooLarge(FailedPrecondition):
    """A write would store an event larger than clients accept; nothing was written."""


class DeadlineExceeded(RiggerError):
    """The caller's deadline passed before the work was done (e.g. a model still thinking)."""


class PlannerOutputInvalid(RiggerError):
    """A model's answers did not validate, even after the retries.

    Carries the first validation error: the later ones are usually the model
    repeating itself.
    """

    def __init__(self, model: str, attempts: int, first_error: str) -> None:
        super().__init__(
            f"model {quoted(model)} gave no valid answer in {attempts} attempts; "
            f"the first was invalid: {first_error}"
        )
        self.model = model
        self.attempts = attempts
        self.first_error = first_error


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
