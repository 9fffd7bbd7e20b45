"""The connection-bound context every repository works through."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, CursorResult, Executable

from registry.store._internal.dberrors import translated
from registry.store.errors import StoreError


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
        # Highest event seq appended in this unit; the store wakes watchers after commit.
        self.last_event_seq: int | None = None
        # Sequence counter rows this transaction has locked (see _internal.sequence).
        self.locked_counters: set[str] = set()

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

    def close(self) -> None:
        self._conn = None
