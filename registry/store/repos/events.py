"""The append-only event log behind Watch streams.

Every state change is appended in the same transaction as the change, with a
sequence number that is strictly increasing in commit order and gap-free (see
``registry.store._internal.sequence``). A reader resuming from the last seq it
processed with ``since(seq)`` never misses an event.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Row, Table, insert, or_, select

from registry.store._internal import checks, sequence
from registry.store._internal.bulk import MultiRowInsert
from registry.store._internal.unit import Unit
from registry.store.errors import StoreError
from registry.store.records import EventRecord
from registry.store.schema import DID_LEN, EVENTS_COUNTER, Event

_T = cast(Table, Event.__table__)
_COLS = tuple(_T.c)
_INSERT = insert(_T)
_INSERT_MANY = MultiRowInsert(_T, ("seq", "type", "agent_did", "payload", "created_at"))
MAX_BATCH = 10_000


def _record(row: Row[Any]) -> EventRecord:
    m = row._mapping
    return EventRecord(
        seq=int(m["seq"]),
        type=m["type"],
        agent_did=m["agent_did"],
        payload=dict(m["payload"] or {}),
        created_at=m["created_at"],
    )


class EventReader:
    def __init__(self, unit: Unit) -> None:
        self._unit = unit

    def since(
        self, after_seq: int, *, limit: int = 1000, agent_did: str | None = None
    ) -> list[EventRecord]:
        """Events with seq > ``after_seq`` in seq order, at most ``limit``; with
        ``agent_did``, that agent's events and the registry-wide ones (no agent)."""
        after_seq = checks.integer("after_seq", after_seq, 0, 2**63 - 1)
        query = select(*_COLS).where(_T.c.seq > after_seq)
        if agent_did is not None:
            query = query.where(or_(_T.c.agent_did == agent_did, _T.c.agent_did.is_(None)))
        query = query.order_by(_T.c.seq).limit(checks.integer("limit", limit, 1, MAX_BATCH))
        return [_record(r) for r in self._unit.execute(query)]

    def latest_seq(self) -> int:
        """The seq of the newest committed event (0 when there is none)."""
        return sequence.current_value(self._unit, EVENTS_COUNTER)


class EventRepository(EventReader):
    def append(self, type: str, agent_did: str | None, payload: dict[str, Any] | None) -> int:
        """Append an event in this transaction; returns its seq.

        The seq counter stays locked until this transaction ends, so call this
        as late in the transaction as is convenient.
        """
        if not self._unit.writable:
            raise StoreError("events can only be appended inside store.transaction()")
        values = {
            "type": checks.text("type", type, 64),
            "agent_did": checks.optional_text("agent_did", agent_did, DID_LEN),
            "payload": checks.json_object("payload", payload),
            "created_at": self._unit.now,
        }
        seq = sequence.next_value(self._unit, EVENTS_COUNTER)
        self._unit.execute(_INSERT, {"seq": seq, **values})
        self._unit.last_event_seq = seq
        return seq

    def append_at_commit(
        self, type: str, agent_did: str | None, payload: dict[str, Any] | None
    ) -> None:
        """Append an event when this transaction commits (same guarantees as
        :meth:`append`: it commits with the transaction's other writes or not at
        all, with a seq in commit order).

        The store writes queued events just before COMMIT, after everything
        the transaction body did, so the event counter is locked only for the
        commit; in a group commit, one counter update and one insert serve the
        whole group. Use it when the caller does not need the seq.
        """
        if not self._unit.writable:
            raise StoreError("events can only be appended inside store.transaction()")
        self._unit.pending_events.append(
            (
                checks.text("type", type, 64),
                checks.optional_text("agent_did", agent_did, DID_LEN),
                checks.json_object("payload", payload),
            )
        )


def flush_pending(unit: Unit) -> None:
    """Write ``unit``'s queued events: one counter advance, one multi-row insert."""
    pending = unit.pending_events
    if not pending:
        return
    last = sequence.next_values(unit, EVENTS_COUNTER, len(pending))
    first = last - len(pending) + 1
    now = unit.form.time(unit.now)
    document = unit.form.json
    _INSERT_MANY.execute(
        unit,
        [
            (first + i, t, did, document(payload), now)
            for i, (t, did, payload) in enumerate(pending)
        ],
    )
    unit.pending_events = []
    unit.last_event_seq = last
