"""Trust: reported signals (idempotent per reporter and report id), per-agent trust
state, score history, and the bulk reads and writes the recompute job needs.

Reads are shaped for 100,000 agents: one query for every agent's inputs (agent
row, trust state, current key), one for recent violations, no per-agent round
trips. Writes are batched: ``executemany`` updates and one sequence allocation
for a whole batch of events.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    bindparam,
    case,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    true,
    type_coerce,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.types import NullType

from registry.store._internal import checks, sequence
from registry.store._internal.dberrors import translate, translated
from registry.store._internal.types import driver_form
from registry.store._internal.unit import Unit
from registry.store.errors import StoreError
from registry.store.schema import (
    EVENTS_COUNTER,
    Agent,
    AgentKey,
    Event,
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


class ScoringInput(NamedTuple):
    """The fields of a :data:`ScoringRow`, named (``ScoringInput(*row)``).

    One agent's stored inputs for the recompute (:meth:`TrustReader.scoring_inputs`).
    A fading signal is present when its value and time both are (``*_by``: the
    reporter, ``""`` if unknown). ``has_state``: the agent has a trust-state row
    (``effective_ring`` is 3 when it has none); ``score`` is None until its first
    computation.
    """

    did: str
    status: str
    granted_ring: int
    created_at: datetime
    current_kid: str
    key_valid_from: datetime | None
    has_state: bool
    score: int | None
    tier: str | None
    effective_ring: int
    candidate_ring: int | None
    candidate_since: datetime | None
    success_rate: float | None
    success_rate_at: datetime | None
    success_rate_by: str
    error_budget: float | None
    error_budget_at: datetime | None
    error_budget_by: str
    audit_completeness: float | None
    audit_completeness_at: datetime | None
    audit_completeness_by: str


class ScoreResult(NamedTuple):
    """The fields of a :data:`ScoreRow`, named (``ScoreResult(*row)``).

    One agent's computed trust, as :meth:`TrustRepository.write_scores` stores it.
    ``breakdown`` is the per-factor breakdown already as JSON text; ``changed``:
    the score, tier or ring changed, so a history point is written too.
    """

    did: str
    score: int
    tier: str
    effective_ring: int
    candidate_ring: int | None
    candidate_since: datetime | None
    ring_reason: str
    breakdown: str
    next_due_at: datetime | None
    changed: bool


# The recompute moves these as plain tuples, not as the named tuples above: the
# garbage collector stops tracking a plain tuple of plain values, so 100,000 of
# them add nothing to its full collections (which would stall the whole process).
#: :class:`ScoringInput`'s fields, as a plain tuple.
ScoringRow = tuple[
    str, str, int, datetime, str, datetime | None, bool, int | None, str | None, int,
    int | None, datetime | None,
    float | None, datetime | None, str,
    float | None, datetime | None, str,
    float | None, datetime | None, str,
]
#: :class:`ScoreResult`'s fields, as a plain tuple.
ScoreRow = tuple[
    str, int, str, int, int | None, datetime | None, str, str, datetime | None, bool
]


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
    """(did, kid, valid_from) of every agent's newest key: the key no later key of
    the same agent follows. An anti-join on the (did, key_index) primary key, which
    both databases run in one pass over the keys even without table statistics (a
    freshly loaded PostgreSQL table has none; a max() per agent then planned badly)."""
    later = _K.alias("later")
    newer = (
        select(later.c.did)
        .where(later.c.did == _K.c.did, later.c.key_index > _K.c.key_index)
        .exists()
    )
    return select(_K.c.did, _K.c.kid, _K.c.valid_from).where(~newer).subquery("current_key")


# -- bulk statements of the recompute (write_scores, append_event_rows) ---------
# Written out once: building and compiling them per batch costs more than the
# database's own work. Column names are those of registry.store.schema.

_SQLITE_UPSERT_STATES = """
INSERT INTO trust_states (did, score, tier, effective_ring, candidate_ring, candidate_since,
                          ring_reason, breakdown, dirty, next_due_at, computed_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)
ON CONFLICT (did) DO UPDATE SET
    score = excluded.score, tier = excluded.tier, effective_ring = excluded.effective_ring,
    candidate_ring = excluded.candidate_ring, candidate_since = excluded.candidate_since,
    ring_reason = excluded.ring_reason, breakdown = excluded.breakdown,
    next_due_at = excluded.next_due_at, computed_at = excluded.computed_at,
    updated_at = excluded.updated_at,
    dirty = CASE WHEN trust_states.updated_at > ? THEN trust_states.dirty ELSE 0 END
"""
_SQLITE_UPSERT_HISTORY = """
INSERT INTO trust_score_history (did, computed_at, score, tier, effective_ring)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (did, computed_at) DO UPDATE SET
    score = excluded.score, tier = excluded.tier, effective_ring = excluded.effective_ring
"""
_SQLITE_INSERT_EVENTS = (
    "INSERT INTO events (seq, type, agent_did, payload, created_at) VALUES (?, ?, ?, ?, ?)"
)
# PostgreSQL: a ScoreRow's fields, in order, are the temporary table's columns.
_PG_CREATE_BATCH = """
CREATE TEMPORARY TABLE trust_scores_batch (
    did text PRIMARY KEY, score integer, tier text, effective_ring integer,
    candidate_ring integer, candidate_since timestamptz, ring_reason text, breakdown jsonb,
    next_due_at timestamptz, changed boolean
) ON COMMIT DROP
"""
_PG_COPY_BATCH = (
    "COPY trust_scores_batch (did, score, tier, effective_ring, candidate_ring, "
    "candidate_since, ring_reason, breakdown, next_due_at, changed) FROM STDIN"
)
_PG_UPSERT_STATES = """
INSERT INTO trust_states (did, score, tier, effective_ring, candidate_ring, candidate_since,
                          ring_reason, breakdown, dirty, next_due_at, computed_at, updated_at)
SELECT did, score, tier, effective_ring, candidate_ring, candidate_since, ring_reason,
       breakdown, false, next_due_at, %(computed_at)s, %(now)s
FROM trust_scores_batch
ON CONFLICT (did) DO UPDATE SET
    score = excluded.score, tier = excluded.tier, effective_ring = excluded.effective_ring,
    candidate_ring = excluded.candidate_ring, candidate_since = excluded.candidate_since,
    ring_reason = excluded.ring_reason, breakdown = excluded.breakdown,
    next_due_at = excluded.next_due_at, computed_at = excluded.computed_at,
    updated_at = excluded.updated_at,
    dirty = CASE WHEN trust_states.updated_at > %(read_at)s THEN trust_states.dirty ELSE false END
"""
_PG_INSERT_HISTORY = """
INSERT INTO trust_score_history (did, computed_at, score, tier, effective_ring)
SELECT did, %(computed_at)s, score, tier, effective_ring FROM trust_scores_batch WHERE changed
ON CONFLICT (did, computed_at) DO UPDATE SET
    score = excluded.score, tier = excluded.tier, effective_ring = excluded.effective_ring
"""
_PG_COPY_EVENTS = "COPY events (seq, type, agent_did, payload, created_at) FROM STDIN"


def _due_conditions(due_at: datetime) -> list[ColumnElement[bool]]:
    """Due: never computed, new input, time-dependent factors due, a promotion being
    held, or the agent row changed since (grant, revocation)."""
    return [
        _S.c.did.is_(None),
        _S.c.dirty == true(),
        _S.c.next_due_at <= due_at,
        _S.c.candidate_since.is_not(None),
        _S.c.computed_at < _A.c.updated_at,
    ]


def _connection(unit: Unit) -> Connection:
    """``unit``'s open connection, for driver-level bulk statements inside the same
    transaction (executemany without per-row statement processing; COPY)."""
    conn: Connection | None = unit._conn
    if conn is None:
        raise StoreError("this transaction is already finished")
    return conn


def _driver(unit: Unit) -> Any:
    """``unit``'s psycopg connection (PostgreSQL COPY)."""
    driver = _connection(unit).connection.driver_connection
    if driver is None:
        raise StoreError("this transaction's connection is closed")
    return driver


@contextmanager
def _driver_errors(unit: Unit, statement: str) -> Iterator[None]:
    """Errors of driver-level calls (PostgreSQL COPY) as the store's named errors,
    as :meth:`Unit.execute` raises them."""
    dbapi = _connection(unit).dialect.loaded_dbapi
    try:
        yield
    except dbapi.Error as error:
        wrapped = sa_exc.DBAPIError.instance(statement, None, error, dbapi.Error)
        raise translate(wrapped) from error


def _raw(column: Any) -> Any:
    """``column`` as the driver returns it (no type processing on the way out)."""
    return type_coerce(column, NullType())


def _time_reader(dialect: str) -> Any:
    """Driver value -> aware datetime, or None for NULL (nullable columns).
    psycopg returns aware datetimes already: those pass as they are (the
    recompute reads hundreds of thousands)."""
    if dialect != "sqlite":
        return _same
    read = driver_form(dialect).read_time

    def reader(value: Any) -> datetime | None:
        return None if value is None else read(value)

    return reader


def _same(value: datetime | None) -> datetime | None:
    return value


_sqlite_time = driver_form("sqlite").time


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
            query = query.where(or_(*_due_conditions(due_at)))
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

    def scoring_inputs(
        self,
        *,
        dids: Sequence[str] | None = None,
        due_at: datetime | None = None,
    ) -> list[ScoringRow]:
        """:meth:`inputs`, lean: only what scoring reads, as plain tuples in
        :class:`ScoringInput`'s field order (one query; timestamps straight from the
        driver, no per-column type processing)."""
        rows: Any = self._unit.execute(self._scoring_query(dids, due_at))
        return self._scoring_rows(rows)

    def scoring_input_batches(
        self,
        size: int,
        *,
        dids: Sequence[str] | None = None,
        due_at: datetime | None = None,
    ) -> Iterator[list[ScoringRow]]:
        """:meth:`scoring_inputs` in lists of ``size`` rows, read as they are
        consumed, so a caller can start on the first rows early. Close the iterator
        before the view ends (``contextlib.closing``).

        PostgreSQL: a server-side cursor in this view's snapshot, driven on the
        driver directly (SQLAlchemy's row objects cost a third more here and keep
        the garbage collector busy). The statement's only parameters are the DIDs
        (text) and ``due_at`` (timezone-aware), which psycopg adapts as SQLAlchemy
        would."""
        query = self._scoring_query(dids, due_at)
        if self._unit.dialect != "postgresql":
            result: Any = self._unit.execute(query)
            for rows in result.partitions(size):
                yield self._scoring_rows(rows)
            return
        if due_at is not None and due_at.tzinfo is None:
            raise StoreError(f"timestamp {due_at!r} has no time zone")
        compiled = query.compile(
            dialect=_connection(self._unit).dialect, compile_kwargs={"render_postcompile": True}
        )
        sql = str(compiled)
        with (
            _driver_errors(self._unit, sql),
            _driver(self._unit).cursor(name="trust_scoring_inputs") as cursor,
        ):
            cursor.execute(sql, compiled.params)
            while rows := cursor.fetchmany(size):
                yield self._scoring_rows(rows)

    def _scoring_query(self, dids: Sequence[str] | None, due_at: datetime | None) -> Any:
        key = _current_keys()
        query = (
            select(
                _A.c.did,
                _A.c.status,
                _A.c.granted_ring,
                _raw(_A.c.created_at),
                key.c.kid,
                _raw(key.c.valid_from),
                _S.c.did.label("s_did"),
                _S.c.score,
                _S.c.tier,
                _S.c.effective_ring,
                _S.c.candidate_ring,
                _raw(_S.c.candidate_since),
                _S.c.success_rate,
                _raw(_S.c.success_rate_at),
                _S.c.success_rate_by,
                _S.c.error_budget,
                _raw(_S.c.error_budget_at),
                _S.c.error_budget_by,
                _S.c.audit_completeness,
                _raw(_S.c.audit_completeness_at),
                _S.c.audit_completeness_by,
            )
            .select_from(_A)
            .outerjoin(key, key.c.did == _A.c.did)
            .outerjoin(_S, _S.c.did == _A.c.did)
        )
        if dids is not None:
            query = query.where(_A.c.did.in_(list(dids)))
        if due_at is not None:
            query = query.where(or_(*_due_conditions(due_at)))
        return query

    def _scoring_rows(self, rows: Iterable[Any]) -> list[ScoringRow]:
        t = _time_reader(self._unit.dialect)
        out: list[ScoringRow] = []
        append = out.append
        for (
            did, status, granted, created, kid, valid_from, s_did, score, tier, ring,
            cand, cand_since, sr, sr_at, sr_by, eb, eb_at, eb_by, au, au_at, au_by,
        ) in rows:
            if s_did is None:
                append(
                    (
                        did, status, int(granted), t(created), kid or "", t(valid_from),
                        False, None, None, 3, None, None,
                        None, None, "", None, None, "", None, None, "",
                    )
                )
                continue
            if sr is None or sr_at is None:
                sr = sr_at = None
            if eb is None or eb_at is None:
                eb = eb_at = None
            if au is None or au_at is None:
                au = au_at = None
            append(
                (
                    did, status, int(granted), t(created), kid or "", t(valid_from),
                    True, score, tier, int(ring), cand, t(cand_since),
                    None if sr is None else float(sr), t(sr_at), sr_by or "",
                    None if eb is None else float(eb), t(eb_at), eb_by or "",
                    None if au is None else float(au), t(au_at), au_by or "",
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
        # The shared allocator: it also takes the counters in their fixed order.
        last = sequence.next_values(self._unit, EVENTS_COUNTER, n)
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

    def write_scores(
        self, results: Sequence[ScoreRow], *, computed_at: datetime, read_at: datetime
    ) -> int:
        """Store a recompute's results (:data:`ScoreRow`) in bulk: each agent's trust
        state (the row is created if missing), and a history point for each result
        marked ``changed``.
        Returns how many history points were written.

        ``dirty`` is cleared only for agents whose inputs did not change after
        ``read_at`` (as :meth:`write_results`). Statements are compiled once per
        batch: SQLite executemany; PostgreSQL COPY into a temporary table, then one
        upsert and one history insert from it.
        """
        self._require_writable()
        if not results:
            return 0
        if self._unit.dialect == "postgresql":
            return self._write_scores_pg(results, computed_at=computed_at, read_at=read_at)
        t = _sqlite_time
        at, now, read = t(computed_at), t(self._unit.now), t(read_at)
        states = [
            (
                did, score, tier, ring, candidate,
                None if since is None else t(since),
                reason, breakdown,
                None if due is None else t(due),
                at, now, read,
            )
            for did, score, tier, ring, candidate, since, reason, breakdown, due, _ in results
        ]
        history = [(r[0], at, r[1], r[2], r[3]) for r in results if r[9]]
        conn = _connection(self._unit)
        with translated():
            conn.exec_driver_sql(_SQLITE_UPSERT_STATES, states)
            if history:
                conn.exec_driver_sql(_SQLITE_UPSERT_HISTORY, history)
        return len(history)

    def _write_scores_pg(
        self, results: Sequence[ScoreRow], *, computed_at: datetime, read_at: datetime
    ) -> int:
        raw = _driver(self._unit)
        changed = 0
        with _driver_errors(self._unit, _PG_COPY_BATCH), raw.cursor() as cur:
            cur.execute(_PG_CREATE_BATCH)
            with cur.copy(_PG_COPY_BATCH) as copy:
                write = copy.write_row
                for r in results:
                    write(r)
                    changed += r[9]
            params = {"computed_at": computed_at, "now": self._unit.now, "read_at": read_at}
            cur.execute(_PG_UPSERT_STATES, params)
            if changed:
                cur.execute(_PG_INSERT_HISTORY, params)
        return changed

    def append_event_rows(self, events: Sequence[tuple[str, str | None, str]]) -> int:
        """:meth:`append_events` with each payload already JSON text (a JSON object):
        one sequence allocation, then executemany (SQLite) or COPY (PostgreSQL).
        Same guarantees: commit order, gap-free. Returns the last seq (0: none)."""
        self._require_writable()
        if not events:
            return 0
        n = len(events)
        # The shared allocator: it also takes the counters in their fixed order.
        last = sequence.next_values(self._unit, EVENTS_COUNTER, n)
        first = last - n + 1
        if self._unit.dialect == "postgresql":
            now = self._unit.now
            raw = _driver(self._unit)
            with (
                _driver_errors(self._unit, _PG_COPY_EVENTS),
                raw.cursor() as cur,
                cur.copy(_PG_COPY_EVENTS) as copy,
            ):
                write = copy.write_row
                for i, (type_, did, payload) in enumerate(events):
                    write((first + i, type_, did, payload, now))
        else:
            at = _sqlite_time(self._unit.now)
            rows = [
                (first + i, type_, did, payload, at)
                for i, (type_, did, payload) in enumerate(events)
            ]
            with translated():
                _connection(self._unit).exec_driver_sql(_SQLITE_INSERT_EVENTS, rows)
        self._unit.last_event_seq = last
        return last

    def prune_events(self, *, before: datetime, keep_last: int = 1) -> int:
        """Delete events created before ``before``, always keeping the newest
        ``keep_last``; returns how many were deleted. Watch streams resuming from a
        pruned sequence are told to take a new snapshot."""
        self._require_writable()
        floor = sequence.current_value(self._unit, EVENTS_COUNTER) - max(0, keep_last)
        result = self._unit.execute(delete(_E).where(_E.c.created_at < before, _E.c.seq <= floor))
        return int(result.rowcount or 0)


__all__ = [
    "FADING_COLUMNS",
    "RESULT_COLUMNS",
    "AgentInputs",
    "HistoryRecord",
    "ScoreResult",
    "ScoreRow",
    "ScoringInput",
    "ScoringRow",
    "SignalRow",
    "SnapshotRow",
    "TrustReader",
    "TrustRepository",
    "TrustStateRecord",
    "ViolationRow",
]
