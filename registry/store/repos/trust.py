"""Trust: reported signals (idempotent per reporter and report id), per-agent trust
state, score history, and the bulk reads and writes the recompute job needs.

Reads are shaped for 100,000 agents: one query for every agent's inputs (agent
row, trust state, current key), one for recent violations, no per-agent round
trips. Writes are batched: ``executemany`` updates and one sequence allocation
for a whole batch of events.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    case,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from registry.store._internal import checks
from registry.store._internal.unit import Unit
from registry.store.errors import StoreError
from registry.store.schema import (
    EVENTS_COUNTER,
    Agent,
    AgentKey,
    Event,
    SequenceCounter,
    TrustReport,
    TrustScoreHistory,
    TrustSignal,
    TrustState,
)

_A = cast(Table, Agent.__table__)
_K = cast(Table, AgentKey.__table__)
_R = cast(Table, TrustReport.__table__)
_G = cast(Table, TrustSignal.__table__)
_S = cast(Table, TrustState.__table__)
_H = cast(Table, TrustScoreHistory.__table__)
_E = cast(Table, Event.__table__)
_C = cast(Table, SequenceCounter.__table__)

#: Where the newest value of each fading signal kind lives in ``trust_states``.
FADING_COLUMNS = {
    "success_rate": ("success_rate", "success_rate_at", "success_rate_by"),
    "error_budget_remaining": ("error_budget", "error_budget_at", "error_budget_by"),
    "audit_log_completeness": (
        "audit_completeness",
        "audit_completeness_at",
        "audit_completeness_by",
    ),
}


#: What a recompute writes per agent.
RESULT_COLUMNS = (
    "score",
    "tier",
    "effective_ring",
    "candidate_ring",
    "candidate_since",
    "ring_reason",
    "breakdown",
    "next_due_at",
    "computed_at",
)


@dataclass(frozen=True, slots=True)
class SignalRow:
    """One signal of a report, as stored."""

    kind: str
    observed_at: datetime
    value: float | None = None
    severity: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class TrustStateRecord:
    did: str
    score: int | None
    tier: str | None
    effective_ring: int
    candidate_ring: int | None
    candidate_since: datetime | None
    ring_reason: str | None
    breakdown: list[Any] | None
    success_rate: tuple[float, datetime, str] | None
    error_budget: tuple[float, datetime, str] | None
    audit_completeness: tuple[float, datetime, str] | None
    dirty: bool
    next_due_at: datetime | None
    computed_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    did: str
    computed_at: datetime
    score: int
    tier: str
    effective_ring: int


@dataclass(frozen=True, slots=True)
class AgentInputs:
    """Everything the recompute needs about one agent (one row of a bulk read)."""

    did: str
    status: str
    granted_ring: int
    created_at: datetime
    updated_at: datetime
    current_kid: str
    key_valid_from: datetime | None
    state: TrustStateRecord | None


@dataclass(frozen=True, slots=True)
class ViolationRow:
    did: str
    severity: str
    occurred_at: datetime
    reason: str
    reporter: str


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    """What a Watch snapshot says of one agent."""

    did: str
    status: str
    granted_ring: int
    current_kid: str
    score: int | None
    tier: str | None
    effective_ring: int | None


def _fading(m: Any, kind: str) -> tuple[float, datetime, str] | None:
    value_col, at_col, by_col = FADING_COLUMNS[kind]
    if m[value_col] is None or m[at_col] is None:
        return None
    return float(m[value_col]), m[at_col], str(m[by_col] or "")


def _state(m: Any) -> TrustStateRecord:
    return TrustStateRecord(
        did=m["did"],
        score=m["score"],
        tier=m["tier"],
        effective_ring=int(m["effective_ring"]),
        candidate_ring=m["candidate_ring"],
        candidate_since=m["candidate_since"],
        ring_reason=m["ring_reason"],
        breakdown=m["breakdown"],
        success_rate=_fading(m, "success_rate"),
        error_budget=_fading(m, "error_budget_remaining"),
        audit_completeness=_fading(m, "audit_log_completeness"),
        dirty=bool(m["dirty"]),
        next_due_at=m["next_due_at"],
        computed_at=m["computed_at"],
        updated_at=m["updated_at"],
    )


def _current_keys() -> Any:
    """(did, kid, valid_from) of every agent's newest key."""
    newest = (
        select(_K.c.did, func.max(_K.c.key_index).label("key_index"))
        .group_by(_K.c.did)
        .subquery("newest")
    )
    return (
        select(_K.c.did, _K.c.kid, _K.c.valid_from)
        .join(newest, and_(_K.c.did == newest.c.did, _K.c.key_index == newest.c.key_index))
        .subquery("current_key")
    )


class TrustReader:
    def __init__(self, unit: Unit) -> None:
        self._unit = unit

    def state(self, did: str) -> TrustStateRecord | None:
        row = self._unit.execute(select(*_S.c).where(_S.c.did == did)).first()
        return None if row is None else _state(row._mapping)

    def history(self, did: str, *, limit: int = 20) -> list[HistoryRecord]:
        """The newest ``limit`` history points of an agent, newest first."""
        query = (
            select(*_H.c)
            .where(_H.c.did == did)
            .order_by(_H.c.computed_at.desc())
            .limit(checks.integer("limit", limit, 1, 10_000))
        )
        return [
            HistoryRecord(
                did=m["did"],
                computed_at=m["computed_at"],
                score=int(m["score"]),
                tier=m["tier"],
                effective_ring=int(m["effective_ring"]),
            )
            for m in (r._mapping for r in self._unit.execute(query))
        ]

    def report_digest(self, reporter: str, report_id: str) -> str | None:
        query = select(_R.c.digest).where(_R.c.reporter == reporter, _R.c.report_id == report_id)
        value = self._unit.execute(query).scalar_one_or_none()
        return None if value is None else str(value)

    def inputs(
        self,
        *,
        dids: Sequence[str] | None = None,
        due_at: datetime | None = None,
    ) -> list[AgentInputs]:
        """Every agent's inputs; only ``dids`` if given; only agents due at ``due_at`` if given.

        Due: never computed, new input (``dirty``), time-dependent factors due
        (``next_due_at``), or the agent row changed since (grant, revocation).
        """
        key = _current_keys()
        query = (
            select(
                _A.c.did,
                _A.c.status,
                _A.c.granted_ring,
                _A.c.created_at,
                _A.c.updated_at.label("agent_updated_at"),
                key.c.kid,
                key.c.valid_from,
                *(c.label("s_" + c.name) for c in _S.c),
            )
            .select_from(_A)
            .outerjoin(key, key.c.did == _A.c.did)
            .outerjoin(_S, _S.c.did == _A.c.did)
        )
        if dids is not None:
            query = query.where(_A.c.did.in_(list(dids)))
        if due_at is not None:
            conditions: list[ColumnElement[bool]] = [
                _S.c.did.is_(None),
                _S.c.dirty == true(),
                _S.c.next_due_at <= due_at,
                _S.c.candidate_since.is_not(None),
                _S.c.computed_at < _A.c.updated_at,
            ]
            query = query.where(or_(*conditions))
        out: list[AgentInputs] = []
        for row in self._unit.execute(query):
            m = row._mapping
            state = None
            if m["s_did"] is not None:
                state = _state({c.name: m["s_" + c.name] for c in _S.c})
            out.append(
                AgentInputs(
                    did=m["did"],
                    status=m["status"],
                    granted_ring=int(m["granted_ring"]),
                    created_at=m["created_at"],
                    updated_at=m["agent_updated_at"],
                    current_kid=m["kid"] or "",
                    key_valid_from=m["valid_from"],
                    state=state,
                )
            )
        return out

    def violations(
        self, since: datetime, *, dids: Sequence[str] | None = None, per_agent: int = 1000
    ) -> dict[str, list[ViolationRow]]:
        """Violations that occurred at or after ``since``, per agent, newest first
        (at most ``per_agent`` each: older ones would add nothing measurable)."""
        query = (
            select(_G.c.agent_did, _G.c.severity, _G.c.observed_at, _G.c.reason, _G.c.reporter)
            .where(_G.c.kind == "violation", _G.c.observed_at >= since)
            .order_by(_G.c.agent_did, _G.c.observed_at.desc())
        )
        if dids is not None:
            query = query.where(_G.c.agent_did.in_(list(dids)))
        out: dict[str, list[ViolationRow]] = {}
        for did, severity, at, reason, reporter in self._unit.execute(query):
            bucket = out.setdefault(did, [])
            if len(bucket) < per_agent:
                bucket.append(ViolationRow(did, severity, at, reason or "", reporter))
        return out

    def snapshot(self, dids: Sequence[str] | None = None) -> list[SnapshotRow]:
        """Every agent's current state (or only ``dids``'), for a Watch snapshot."""
        key = _current_keys()
        query = (
            select(
                _A.c.did,
                _A.c.status,
                _A.c.granted_ring,
                key.c.kid,
                _S.c.score,
                _S.c.tier,
                _S.c.effective_ring,
            )
            .select_from(_A)
            .outerjoin(key, key.c.did == _A.c.did)
            .outerjoin(_S, _S.c.did == _A.c.did)
            .order_by(_A.c.did)
        )
        if dids is not None:
            query = query.where(_A.c.did.in_(list(dids)))
        return [
            SnapshotRow(did, status, int(granted), kid or "", score, tier, ring)
            for did, status, granted, kid, score, tier, ring in self._unit.execute(query)
        ]

    def oldest_event_seq(self) -> int | None:
        """The smallest seq still in the event table (None when it is empty)."""
        value = self._unit.execute(select(func.min(_E.c.seq))).scalar_one_or_none()
        return None if value is None else int(value)


class TrustRepository(TrustReader):
    def _require_writable(self) -> None:
        if not self._unit.writable:
            raise StoreError("trust writes need store.transaction()")

    def record_report(
        self,
        *,
        reporter: str,
        report_id: str,
        agent_did: str,
        digest: str,
        signals: Sequence[SignalRow],
    ) -> None:
        """Store one report and its signals; fold the fading ones into the agent's
        trust state (only when newer than what it holds) and mark the agent dirty.

        The caller has checked (reporter, report_id) is new in this transaction.
        """
        self._require_writable()
        now = self._unit.now
        self._unit.execute(
            insert(_R).values(
                reporter=reporter,
                report_id=report_id,
                agent_did=agent_did,
                digest=checks.hex_digest("digest", digest),
                received_at=now,
            )
        )
        if signals:
            self._unit.execute(
                insert(_G),
                [
                    {
                        "reporter": reporter,
                        "report_id": report_id,
                        "position": i,
                        "agent_did": agent_did,
                        "kind": s.kind,
                        "value": s.value,
                        "severity": s.severity,
                        "reason": s.reason,
                        "observed_at": s.observed_at,
                    }
                    for i, s in enumerate(signals)
                ],
            )
        self.ensure_states([agent_did], default_ring=2)
        values: dict[str, Any] = {"dirty": True, "updated_at": now}
        self._unit.execute(update(_S).where(_S.c.did == agent_did).values(**values))
        for kind, (value_col, at_col, by_col) in FADING_COLUMNS.items():
            newest = max(
                (s for s in signals if s.kind == kind), key=lambda s: s.observed_at, default=None
            )
            if newest is None:
                continue
            # Only a newer observation replaces the stored one (reports may arrive out of order).
            self._unit.execute(
                update(_S)
                .where(
                    _S.c.did == agent_did,
                    or_(_S.c[at_col].is_(None), _S.c[at_col] <= newest.observed_at),
                )
                .values({value_col: newest.value, at_col: newest.observed_at, by_col: reporter})
            )

    def ensure_states(
        self,
        dids: Iterable[str],
        *,
        default_ring: int,
        dirty: bool = True,
        updated_at: datetime | None = None,
    ) -> None:
        """Create empty trust-state rows for agents that have none (race-free)."""
        self._require_writable()
        at = updated_at or self._unit.now
        rows = [
            {"did": d, "effective_ring": default_ring, "dirty": dirty, "updated_at": at}
            for d in dids
        ]
        if not rows:
            return
        dialect = postgresql if self._unit.dialect == "postgresql" else sqlite
        stmt = dialect.insert(_S).on_conflict_do_nothing(index_elements=["did"])
        self._unit.execute(stmt, rows)

    def write_states(self, rows: Sequence[dict[str, Any]]) -> None:
        """Bulk-update computed results; each row holds ``did`` and the columns to set.

        All rows must carry the same keys (one ``executemany``)."""
        self._require_writable()
        if not rows:
            return
        keys = [k for k in rows[0] if k != "did"]
        stmt = (
            update(_S)
            .where(_S.c.did == bindparam("b_did"))
            .values({k: bindparam("b_" + k) for k in keys})
        )
        self._unit.execute(stmt, [{"b_" + k: v for k, v in row.items()} for row in rows])

    def write_results(self, rows: Sequence[dict[str, Any]], *, read_at: datetime) -> None:
        """Bulk-write computed results (the keys of :data:`RESULT_COLUMNS` plus ``did``).

        ``dirty`` is cleared only for agents whose inputs did not change after
        ``read_at`` (when the recompute read them): a report that lands while the
        recompute runs keeps its agent dirty for the next run.
        """
        self._require_writable()
        if not rows:
            return
        values: dict[str, Any] = {k: bindparam("b_" + k) for k in RESULT_COLUMNS}
        changed_since = _S.c.updated_at > bindparam("b_read_at")
        values["dirty"] = case((changed_since, _S.c.dirty), else_=false())
        values["updated_at"] = bindparam("b_now")
        stmt = update(_S).where(_S.c.did == bindparam("b_did")).values(values)
        now = self._unit.now
        params = []
        for row in rows:
            p = {"b_" + k: row[k] for k in RESULT_COLUMNS}
            p["b_did"] = row["did"]
            p["b_read_at"] = read_at
            p["b_now"] = now
            params.append(p)
        self._unit.execute(stmt, params)

    def mark_dirty(self, dids: Iterable[str]) -> None:
        self._require_writable()
        dids = list(dids)
        if dids:
            self._unit.execute(
                update(_S).where(_S.c.did.in_(dids)).values(dirty=True, updated_at=self._unit.now)
            )

    def add_history(self, rows: Sequence[dict[str, Any]]) -> None:
        """Bulk-insert history points (did, computed_at, score, tier, effective_ring)."""
        self._require_writable()
        if not rows:
            return
        # Two runs at one instant (a frozen or stepped-back clock) replace, not collide.
        dialect = postgresql if self._unit.dialect == "postgresql" else sqlite
        stmt = dialect.insert(_H)
        stmt = stmt.on_conflict_do_update(
            index_elements=["did", "computed_at"],
            set_={
                "score": stmt.excluded.score,
                "tier": stmt.excluded.tier,
                "effective_ring": stmt.excluded.effective_ring,
            },
        )
        self._unit.execute(stmt, list(rows))

    def append_events(self, events: Sequence[tuple[str, str | None, dict[str, Any]]]) -> int:
        """Append many events at once: one sequence allocation, one ``executemany``.

        Same guarantees as ``tx.events.append`` (commit order, gap-free): the
        counter row is advanced by ``len(events)`` and stays locked until commit.
        Returns the last seq (0 when ``events`` is empty).
        """
        self._require_writable()
        if not events:
            return 0
        n = len(events)
        stmt = (
            update(_C)
            .where(_C.c.name == EVENTS_COUNTER)
            .values(value=_C.c.value + n)
            .returning(_C.c.value)
        )
        last = self._unit.execute(stmt).scalar_one_or_none()
        if last is None:
            raise StoreError("sequence counter 'events' is missing", hint="run `mesh db upgrade`")
        last = int(last)
        first = last - n + 1
        now = self._unit.now
        self._unit.execute(
            insert(_E),
            [
                {
                    "seq": first + i,
                    "type": checks.text("type", type_, 64),
                    "agent_did": did,
                    "payload": payload,
                    "created_at": now,
                }
                for i, (type_, did, payload) in enumerate(events)
            ],
        )
        self._unit.last_event_seq = last
        return last

    def prune_events(self, *, before: datetime, keep_last: int = 1) -> int:
        """Delete events created before ``before``, always keeping the newest
        ``keep_last``; returns how many were deleted. Watch streams resuming from a
        pruned sequence are told to take a new snapshot."""
        self._require_writable()
        latest = self._unit.execute(
            select(_C.c.value).where(_C.c.name == EVENTS_COUNTER)
        ).scalar_one()
        floor = int(latest) - max(0, keep_last)
        result = self._unit.execute(delete(_E).where(_E.c.created_at < before, _E.c.seq <= floor))
        return int(result.rowcount or 0)


__all__ = [
    "FADING_COLUMNS",
    "RESULT_COLUMNS",
    "AgentInputs",
    "HistoryRecord",
    "SignalRow",
    "SnapshotRow",
    "TrustReader",
    "TrustRepository",
    "TrustStateRecord",
    "ViolationRow",
]
