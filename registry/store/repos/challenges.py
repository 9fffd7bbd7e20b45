"""Registry-issued challenges (nonces) for proof of possession; one use each."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from registry.store._internal import checks
from registry.store._internal.bulk import MultiRowInsert
from registry.store._internal.unit import Unit
from registry.store.errors import FailedPrecondition, InvalidArgument, NotFound
from registry.store.records import ChallengeRecord
from registry.store.schema import NAME_LEN, Challenge

_T = cast(Table, Challenge.__table__)
_COLS = tuple(_T.c)
_INSERT = insert(_T)
_BY_NONCE = select(*_COLS).where(_T.c.nonce == bindparam("nonce"))
# A first use records the nonce as used at once; an existing row (a replay) is left as is.
_INSERT_USED = {
    "sqlite": sqlite.insert(_T).on_conflict_do_nothing(index_elements=["nonce"]),
    "postgresql": postgresql.insert(_T).on_conflict_do_nothing(index_elements=["nonce"]),
}
# RETURNING says whether the row went in (psycopg reports no rowcount here).
_INSERT_USED = {name: stmt.returning(_T.c.nonce) for name, stmt in _INSERT_USED.items()}
_INSERT_USED_MANY = MultiRowInsert(
    _T,
    ("nonce", "purpose", "trust_domain", "created_at", "expires_at", "used_at"),
    on_conflict="ON CONFLICT (nonce) DO NOTHING",
    returning=("nonce",),
)
_CONSUME = (
    update(_T)
    .where(
        _T.c.nonce == bindparam("b_nonce"),
        _T.c.purpose == bindparam("b_purpose"),
        _T.c.trust_domain == bindparam("b_trust_domain"),
        _T.c.used_at.is_(None),
        _T.c.expires_at > bindparam("b_now"),
    )
    .values(used_at=bindparam("b_used_at"))
    .returning(*_COLS)
)


def _record(row: Row[Any]) -> ChallengeRecord:
    m = row._mapping
    return ChallengeRecord(
        nonce=m["nonce"],
        purpose=m["purpose"],
        trust_domain=m["trust_domain"],
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        used_at=m["used_at"],
    )


class ChallengeReader:
    def __init__(self, unit: Unit) -> None:
        self._unit = unit

    def find(self, nonce: str) -> ChallengeRecord | None:
        row = self._unit.execute(_BY_NONCE, {"nonce": nonce}).first()
        return None if row is None else _record(row)


def _values(
    nonce: str, purpose: str, trust_domain: str, now: datetime, expires_at: datetime,
    *, used_at: datetime | None,
) -> dict[str, Any]:
    """A challenge row, its fields checked."""
    return {
        "nonce": checks.text("nonce", nonce, 128),
        "purpose": checks.text("purpose", purpose, 64),
        "trust_domain": checks.text("trust_domain", trust_domain, NAME_LEN),
        "created_at": now,
        "expires_at": expires_at,
        "used_at": used_at,
    }


class ChallengeRepository(ChallengeReader):
    def create(
        self, *, nonce: str, purpose: str, trust_domain: str, expires_at: datetime
    ) -> ChallengeRecord:
        now = self._unit.now
        expires_at = checks.aware("expires_at", expires_at)
        if expires_at <= now:
            raise InvalidArgument("expires_at must be in the future")
        values = _values(nonce, purpose, trust_domain, now, expires_at, used_at=None)
        self._unit.execute(_INSERT, values)
        return ChallengeRecord(nonce, purpose, trust_domain, now, expires_at, None)

    def consume(self, nonce: str, *, purpose: str, trust_domain: str) -> ChallengeRecord:
        """Use a challenge once, atomically, for the purpose and trust domain it was
        issued for. Unknown -> NotFound; used, expired or issued for something
        else -> FailedPrecondition."""
        now = self._unit.now
        row = self._unit.execute(
            _CONSUME,
            {
                "b_nonce": nonce,
                "b_purpose": purpose,
                "b_trust_domain": trust_domain,
                "b_now": now,
                "b_used_at": now,
            },
        ).first()
        if row is not None:
            return _record(row)
        current = self.find(nonce)
        hint = "request a new challenge"
        if current is None:
            raise NotFound("unknown challenge", hint=hint)
        if current.used_at is not None:
            raise FailedPrecondition("challenge was already used", hint=hint)
        if current.expires_at <= now:
            raise FailedPrecondition("challenge expired", hint=hint)
        raise FailedPrecondition(
            f"challenge was issued for {current.purpose!r} in trust domain "
            f"{current.trust_domain!r}, not {purpose!r} in {trust_domain!r}",
            hint=hint,
        )

    def use(
        self, *, nonce: str, purpose: str, trust_domain: str, expires_at: datetime
    ) -> ChallengeRecord:
        """Record the one use of a challenge this registry minted statelessly:
        ``create`` and ``consume`` in one statement. A nonce already in the table
        (used, or created and not yet used) goes through :meth:`consume`, so a
        replay raises FailedPrecondition exactly as there."""
        now = self._unit.now
        expires_at = checks.aware("expires_at", expires_at)
        if expires_at <= now:
            raise FailedPrecondition("challenge expired", hint="request a new challenge")
        values = _values(nonce, purpose, trust_domain, now, expires_at, used_at=now)
        inserted = self._unit.execute(_INSERT_USED[self._unit.dialect], values).first()
        if inserted is not None:
            return ChallengeRecord(nonce, purpose, trust_domain, now, expires_at, now)
        return self.consume(nonce, purpose=purpose, trust_domain=trust_domain)

    def use_many(self, uses: Sequence[tuple[str, str, str, datetime]]) -> set[str]:
        """:meth:`use` for many ``(nonce, purpose, trust_domain, expires_at)`` in one
        statement; returns the nonces recorded. One already in the table, given
        twice, or expired is not recorded (``use`` says why)."""
        unit = self._unit
        now = unit.now
        time = unit.form.time
        at = time(now)
        rows: dict[str, tuple[Any, ...]] = {}
        for nonce, purpose, trust_domain, expires_at in uses:
            expires_at = checks.aware("expires_at", expires_at)
            nonce = checks.text("nonce", nonce, 128)
            if expires_at <= now or nonce in rows:
                continue
            rows[nonce] = (
                nonce,
                checks.text("purpose", purpose, 64),
                checks.text("trust_domain", trust_domain, NAME_LEN),
                at,
                time(expires_at),
                at,
            )
        if not rows:
            return set()
        return {str(row[0]) for row in _INSERT_USED_MANY.execute(unit, list(rows.values()))}

    def purge_expired(self, before: datetime | None = None) -> int:
        """Delete challenges that expired before ``before`` (default: now)."""
        cutoff = checks.aware("before", before or self._unit.now)
        result = self._unit.execute(delete(_T).where(_T.c.expires_at < cutoff))
        return int(result.rowcount)
