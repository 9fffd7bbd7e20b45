"""The connection-bound context every repository works through."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, CursorResult, Executable
from sqlalchemy import exc as sa_exc

from registry.store._internal.dberrors import translated
from registry.store._internal.types import DriverForm, driver_form
from registry.store.errors import StoreError

#: (type, agent_did, payload): an event to append when the transaction commits.
PendingEvent = tuple[str, str | None, dict[str, Any]]
#: (actor, action, subject, details): an audit entry to append at commit.
PendingAudit = tuple[str, str, str, dict[str, Any]]


class Unit:
    """One open DB transaction (read or write) plus the time it started.

    ``now`` is fixed for the whole transaction so that rows written together
    (agent, event, audit entry) carry one timestamp.
    """

    def __init__(self, conn: Connection, *, now: datetime, dialect: str, writable: bool) -> None:
        self._conn: Connection | None = conn
        self.now = now
        self.dialect = dialect
        self.writable = writable
        #: Values in this back end's driver form, for ``driver_execute``.
        self.form: DriverForm = driver_form(dialect)
        # Highest event seq appended in this unit; the store wakes watchers after commit.
        self.last_event_seq: int | None = None
        # Sequence counter rows this transaction has locked (see _internal.sequence).
        self.locked_counters: set[str] = set()
        # Rows appended at commit time (``events.append_at_commit``, ``audit.append``),
        # in call order.
        self.pending_events: list[PendingEvent] = []
        self.pending_audit: list[PendingAudit] = []

    def execute(self, statement: Executable, params: Any = None) -> CursorResult[Any]:
        if self._conn is None:
            raise StoreError(
                "this transaction is already finished",
                hint="use the repositories only inside their `with` block",
            )
        with translated():
            if params is None:
                return self._conn.execute(statement)
            return self._conn.execute(statement, params)

    def driver_execute(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run ``sql`` on this transaction's driver connection directly (SAVEPOINT,
        the bulk statements of ``_internal.bulk``): no compilation, no type
        processing and none of SQLAlchemy's per-statement machinery (it costs
        ten times what a short statement costs SQLite), so ``params`` (positional)
        must already be in the driver's form (``types.DriverForm``). The rows it
        returns, as the driver gives them (``[]`` for none); a driver error is
        raised as the store's named error, as :meth:`execute` raises it."""
        conn = self._conn
        if conn is None:
            raise StoreError("this transaction is already finished")
        with translated():
            raw = conn.connection
            cursor = raw.cursor()
            try:
                if params:
                    cursor.execute(sql, params)
                else:  # psycopg then reads no placeholders in ``sql``
                    cursor.execute(sql)
                return cursor.fetchall() if cursor.description is not None else []
            except conn.dialect.loaded_dbapi.Error as error:
                raise _wrapped(conn, raw, cursor, sql, params, error) from error
            finally:
                cursor.close()

    # -- savepoints of a group commit --------------------------------------------------

    def mark(self) -> tuple[int, int, int | None, frozenset[str]]:
        """What a savepoint must restore besides the database: see :meth:`restore`."""
        return (
            len(self.pending_events),
            len(self.pending_audit),
            self.last_event_seq,
            frozenset(self.locked_counters),
        )

    def restore(self, mark: tuple[int, int, int | None, frozenset[str]]) -> None:
        """Forget what was queued or locked after ``mark`` (its savepoint rolled back)."""
        events, audit, last_seq, locked = mark
        del self.pending_events[events:]
        del self.pending_audit[audit:]
        self.last_event_seq = last_seq
        self.locked_counters = set(locked)

    def close(self) -> None:
        self._conn = None


def _wrapped(
    conn: Connection, raw: Any, cursor: Any, sql: str, params: Sequence[Any], error: Exception
) -> sa_exc.DBAPIError:
    """A driver error as SQLAlchemy would have raised it (and, like SQLAlchemy, a
    connection that is gone is invalidated so the pool does not hand it out again)."""
    dialect = conn.dialect
    gone = dialect.is_disconnect(error, raw.dbapi_connection, cursor)
    if gone:
        conn.invalidate(error)
    return sa_exc.DBAPIError.instance(
        sql, params, error, dialect.loaded_dbapi.Error,
        connection_invalidated=gone, dialect=dialect,
    )
