"""The tamper-evident audit trail: append-only, hash-chained (see ``registry.store.audit``)."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Row, Table, select

from registry.store._internal import checks, sequence
from registry.store._internal.bulk import MultiRowInsert
from registry.store._internal.unit import Unit
from registry.store.audit import GENESIS_HASH, chain_hashes
from registry.store.errors import StoreError
from registry.store.records import AuditRecord
from registry.store.schema import AUDIT_COUNTER, NAME_LEN, SPIFFE_ID_LEN, AuditEntry

_T = cast(Table, AuditEntry.__table__)
_COLS = tuple(_T.c)
_INSERT_MANY = MultiRowInsert(
    _T, ("seq", "at", "actor", "action", "subject", "details", "prev_hash", "hash")
)
# The hash a new row chains to: run on the driver (once per write transaction).
_PREV_HASH = {
    "sqlite": "SELECT hash FROM audit_log WHERE seq = ?",
    "postgresql": "SELECT hash FROM audit_log WHERE seq = %s",
}


def _record(row: Row[Any]) -> AuditRecord:
    m = row._mapping
    return AuditRecord(
        seq=int(m["seq"]),
        at=m["at"],
        actor=m["actor"],
        action=m["action"],
        subject=m["subject"],
        details=dict(m["details"] or {}),
        prev_hash=m["prev_hash"],
        hash=m["hash"],
    )


class AuditReader:
    def __init__(self, unit: Unit) -> None:
        self._unit = unit

    def rows(self, *, after_seq: int = 0, limit: int = 1000) -> list[AuditRecord]:
        """Audit rows with seq > ``after_seq`` in seq order."""
        query = (
            select(*_COLS)
            .where(_T.c.seq > checks.integer("after_seq", after_seq, 0, 2**63 - 1))
            .order_by(_T.c.seq)
            .limit(checks.integer("limit", limit, 1, 10_000))
        )
        return [_record(r) for r in self._unit.execute(query)]

    def latest_seq(self) -> int:
        return sequence.current_value(self._unit, AUDIT_COUNTER)


class AuditRepository(AuditReader):
    def append(
        self, actor: str, action: str, subject: str, details: dict[str, Any] | None = None
    ) -> None:
        """Append an audit entry, chained to the previous one, when this transaction
        commits: with the transaction's other writes or not at all, in call order.
        The audit counter is locked only for the commit (so never before the
        events counter, the order every writer takes them in), and a group
        commit chains all its entries with one counter update, one read of the
        previous hash and one insert. Arguments are checked now."""
        if not self._unit.writable:
            raise StoreError("audit entries can only be appended inside store.transaction()")
        self._unit.pending_audit.append(
            (
                checks.text("actor", actor, NAME_LEN),
                checks.text("action", action, 64),
                checks.text("subject", subject, SPIFFE_ID_LEN, empty_ok=True),
                checks.json_object("details", details),
            )
        )


def flush_pending(unit: Unit) -> None:
    """Write ``unit``'s queued audit entries, chained after the newest committed one."""
    pending = unit.pending_audit
    if not pending:
        return
    last = sequence.next_values(unit, AUDIT_COUNTER, len(pending))
    first = last - len(pending) + 1
    prev_hash = _previous_hash(unit, first)
    hashes = chain_hashes(first, unit.now, pending, prev_hash)
    at = unit.form.time(unit.now)
    document = unit.form.json
    rows = []
    for i, (actor, action, subject, doc) in enumerate(pending):
        rows.append(
            (first + i, at, actor, action, subject, document(doc), prev_hash, hashes[i])
        )
        prev_hash = hashes[i]
    _INSERT_MANY.execute(unit, rows)
    unit.pending_audit = []


def _previous_hash(unit: Unit, seq: int) -> str:
    """The hash row ``seq`` chains to (the genesis hash for the first row)."""
    if seq <= 1:
        return GENESIS_HASH
    rows = unit.driver_execute(_PREV_HASH[unit.dialect], (seq - 1,))
    prev = rows[0][0] if rows else None
    if prev is None:
        raise StoreError(
            f"audit row {seq - 1} is missing; the audit trail is damaged",
            hint="run `mesh audit verify` and investigate before writing more",
        )
    return str(prev)
