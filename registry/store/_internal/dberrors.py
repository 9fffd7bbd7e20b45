"""Turn SQLAlchemy / driver exceptions into the store's named errors.

Nothing raw escapes: each ``sqlalchemy.exc`` error becomes a ``StoreError``
subclass with a message a person can act on; the driver error stays attached
as ``__cause__`` for logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import PrimaryKeyConstraint, UniqueConstraint
from sqlalchemy import exc as sa_exc

from registry.store.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    StoreError,
    StoreUnavailable,
)
from registry.store.schema import metadata


class SchemaNotReady(StoreUnavailable):
    """The database has not been migrated to the schema this code expects."""


_UPGRADE_HINT = "run `mesh db upgrade` (the server also upgrades at start)"

# What each unique constraint means, for AlreadyExists messages.
_UNIQUE_MEANING = {
    "pk_agents": "an agent with this DID is already registered",
    "uq_agents_spiffe_id": "an agent with this SPIFFE ID is already registered",
    "pk_agent_keys": "this agent already has a key at this index",
    "uq_agent_keys_kid": "a key with this kid is already registered",
    "pk_key_histories": "this agent already has a key history",
    "pk_join_tokens": "a join token with this id already exists",
    "uq_join_tokens_token_hash": "a join token with this secret already exists",
    "pk_challenges": "a challenge with this nonce already exists",
    "pk_svids": "an SVID with this serial is already recorded",
    "pk_principals": "a principal with this id already exists",
    "uq_principals_kind_name": "a principal of this kind with this name already exists",
    "uq_principals_credential_hash": "a principal with this credential already exists",
}


def _unique_constraints_by_columns() -> dict[tuple[str, frozenset[str]], str]:
    """SQLite names the columns of a failed UNIQUE, not the constraint: map back."""
    found: dict[tuple[str, frozenset[str]], str] = {}
    for table in metadata.tables.values():
        for constraint in table.constraints:
            if isinstance(constraint, PrimaryKeyConstraint | UniqueConstraint) and constraint.name:
                cols = frozenset(c.name for c in constraint.columns)
                found[(table.name, cols)] = str(constraint.name)
    return found


_BY_COLUMNS = _unique_constraints_by_columns()
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (.+)$")


def _unique_constraint_name(error: sa_exc.IntegrityError) -> str | None:
    orig = error.orig
    diag = getattr(orig, "diag", None)
    if diag is not None and getattr(diag, "constraint_name", None):
        return str(diag.constraint_name)
    match = _SQLITE_UNIQUE.search(str(orig))
    if match is None:
        return None
    pairs = [part.strip().split(".", 1) for part in match.group(1).split(",")]
    tables = {p[0] for p in pairs if len(p) == 2}
    if len(tables) != 1:
        return None
    return _BY_COLUMNS.get((tables.pop(), frozenset(p[1] for p in pairs)))


def _sqlstate(error: sa_exc.DBAPIError) -> str | None:
    state = getattr(error.orig, "sqlstate", None)
    return str(state) if state else None


def translate(error: sa_exc.SQLAlchemyError) -> StoreError:
    """The named store error for ``error``."""
    if isinstance(error, sa_exc.IntegrityError):
        return _integrity(error)
    if isinstance(error, sa_exc.TimeoutError):
        return StoreUnavailable(
            "all database connections are busy",
            hint="retry shortly, or raise the store's pool size",
        )
    if isinstance(error, sa_exc.DBAPIError):
        return _dbapi(error)
    if isinstance(error, sa_exc.StatementError) and isinstance(error.orig, StoreError):
        return error.orig
    return StoreError(f"unexpected database error ({type(error).__name__})")


def _integrity(error: sa_exc.IntegrityError) -> StoreError:
    state = _sqlstate(error)
    text = str(error.orig)
    if state == "23505" or "UNIQUE constraint failed" in text:
        name = _unique_constraint_name(error)
        meaning = _UNIQUE_MEANING.get(name or "", "a row with the same unique value exists")
        return AlreadyExists(meaning + (f" ({name})" if name else ""))
    if state == "23503" or "FOREIGN KEY constraint failed" in text:
        return FailedPrecondition(
            "the referenced agent does not exist", hint="register the agent first"
        )
    if state in ("23502", "23514") or "NOT NULL constraint" in text or "CHECK constraint" in text:
        return InvalidArgument(f"value rejected by the schema: {_first_line(text)}")
    return StoreError(f"integrity error: {_first_line(text)}")


def _dbapi(error: sa_exc.DBAPIError) -> StoreError:
    state = _sqlstate(error) or ""
    text = str(error.orig)
    if state == "42P01" or "no such table" in text:
        return SchemaNotReady("the database has no registry schema yet", hint=_UPGRADE_HINT)
    if state == "55P03":
        return StoreUnavailable(
            "timed out waiting for a row lock held by another transaction",
            hint="retry shortly; a long-running transaction is holding it",
        )
    if state in ("40001", "40P01"):
        return StoreUnavailable(
            "the transaction lost a concurrency conflict and was rolled back",
            hint="retry the request",
        )
    if state.startswith("22"):
        return InvalidArgument(f"value rejected by the database: {_first_line(text)}")
    if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError) or (
        error.connection_invalidated
    ):
        if "locked" in text or "busy" in text:
            return StoreUnavailable(
                "the database is busy (locked by another writer)",
                hint="retry shortly; only one process should write a SQLite registry",
            )
        return StoreUnavailable(
            f"the database cannot be reached: {_first_line(text)}",
            hint="check that the database is running and the URL is right",
        )
    if state.startswith("08") or state.startswith("57P"):
        return StoreUnavailable(f"the database connection failed: {_first_line(text)}")
    return StoreError(f"unexpected database error ({type(error.orig).__name__})")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no detail"


@contextmanager
def translated() -> Iterator[None]:
    """Run a block, re-raising any SQLAlchemy error as its store error."""
    try:
        yield
    except sa_exc.SQLAlchemyError as error:
        raise translate(error) from error
