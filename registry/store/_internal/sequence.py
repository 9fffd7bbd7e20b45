"""Gap-free sequence numbers in commit order, from one counter row per sequence.

Why not autoincrement/SERIAL: with concurrent transactions a serial value is
taken at INSERT time, not at COMMIT. Transaction A can take 10, B take 11 and
commit first; a reader then sees 11, moves its cursor past it, and never sees
10 when A commits. A rolled-back transaction also leaves a gap, so a reader
cannot tell "late" from "never".

Here the writing transaction increments its counter row
(``UPDATE sequence_counters SET value = value + 1 ... RETURNING value``).
PostgreSQL keeps that row locked until the transaction ends, so the next
writer's UPDATE waits, then reads the committed value: numbers are handed out
in commit order, a reader that has seen N has seen every number below N, and
a rollback returns its number. SQLite has a single writer, which gives the same
order. The cost is that event writers serialise on that row for the rest of
their transaction: append events late in a transaction, and keep transactions
short. ``events.append_at_commit`` and ``audit.append`` queue rows that the store
writes just before COMMIT, so the counters stay locked only for the commit
itself; a group commit takes each counter once for the whole group. A
distributed PostgreSQL-compatible engine keeps these semantics (serialisable
row lock on one key); it is a deliberate hot row.

Lock order: a transaction may take several counters (an audit entry and an
event). Two transactions taking them in opposite orders would deadlock, so
counters are always locked in ``COUNTER_ORDER``: taking a later one first
locks the earlier ones too (``SELECT ... FOR UPDATE``). Code that advances a
counter itself must take them in the same order (events before audit).
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, bindparam, select

from registry.store._internal.dberrors import SchemaNotReady
from registry.store._internal.unit import Unit
from registry.store.schema import AUDIT_COUNTER, EVENTS_COUNTER, SequenceCounter

#: The order in which one transaction locks counter rows. New counters go last.
COUNTER_ORDER = (EVENTS_COUNTER, AUDIT_COUNTER)

_C = cast(Table, SequenceCounter.__table__)
_CURRENT = select(_C.c.value).where(_C.c.name == bindparam("counter"))
# Run on the driver (``Unit.driver_execute``), once or twice per write transaction,
# where SQLAlchemy's statement machinery would cost more than the statement.
_ADVANCE = {
    "sqlite": "UPDATE sequence_counters SET value = value + ? WHERE name = ? RETURNING value",
    "postgresql": (
        "UPDATE sequence_counters SET value = value + %s WHERE name = %s RETURNING value"
    ),
}
_LOCK = {"postgresql": "SELECT value FROM sequence_counters WHERE name = %s FOR UPDATE"}


def next_value(unit: Unit, name: str) -> int:
    """Take the next number of sequence ``name`` inside ``unit``'s transaction."""
    return next_values(unit, name, 1)


def next_values(unit: Unit, name: str, count: int) -> int:
    """Take the next ``count`` numbers of sequence ``name``; returns the last of them
    (they are ``last - count + 1 .. last``)."""
    if count < 1:
        raise ValueError("count must be positive")
    if name not in unit.locked_counters and unit.dialect != "sqlite":
        # SQLite has one writer at a time: nothing to order there.
        position = COUNTER_ORDER.index(name) if name in COUNTER_ORDER else len(COUNTER_ORDER)
        for earlier in COUNTER_ORDER[:position]:
            if earlier not in unit.locked_counters:
                unit.driver_execute(_LOCK[unit.dialect], (earlier,))
                unit.locked_counters.add(earlier)
    rows = unit.driver_execute(_ADVANCE[unit.dialect], (count, name))
    row = rows[0] if rows else None
    if row is None:
        raise SchemaNotReady(f"sequence counter {name!r} is missing", hint="run `mesh db upgrade`")
    unit.locked_counters.add(name)
    return int(row[0])


def current_value(unit: Unit, name: str) -> int:
    """The last number handed out by a committed transaction (or by this one)."""
    value = unit.execute(_CURRENT, {"counter": name}).scalar_one_or_none()
    if value is None:
        raise SchemaNotReady(f"sequence counter {name!r} is missing", hint="run `mesh db upgrade`")
    return int(value)
