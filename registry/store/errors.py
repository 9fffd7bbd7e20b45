"""Named store errors, one per outcome a caller must tell apart.

The gRPC layer maps them one to one: ``NotFound`` -> NOT_FOUND,
``AlreadyExists`` -> ALREADY_EXISTS, ``FailedPrecondition`` -> FAILED_PRECONDITION,
``InvalidArgument`` -> INVALID_ARGUMENT, ``StoreUnavailable`` -> UNAVAILABLE and
anything else deriving from ``StoreError`` -> INTERNAL. Raw driver errors
(sqlite3, psycopg, SQLAlchemy) never leave the store: they are translated here
first, with the original kept as ``__cause__`` for logs.
"""

from __future__ import annotations

from mesh.errors import MeshError


class StoreError(MeshError):
    """Base of every error the registry store raises."""


class NotFound(StoreError):
    """The requested row does not exist."""


class AlreadyExists(StoreError):
    """A row with the same unique value (DID, SPIFFE ID, kid, ...) is already stored."""


class FailedPrecondition(StoreError):
    """The row exists but is not in a state that allows the change.

    Examples: a join token already used, expired or revoked; a challenge
    already consumed; revoking an agent that is already terminated.
    """


#: The same outcome under the name some callers expect for a lost race.
Conflict = FailedPrecondition


class InvalidArgument(StoreError):
    """A value handed to the store is malformed (naive datetime, wrong key length, ...)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or is overloaded right now; retrying later may succeed.

    A failure while committing also lands here: the outcome of that
    transaction is then unknown, so callers must retry idempotently.
    """
