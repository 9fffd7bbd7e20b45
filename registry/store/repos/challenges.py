"""Registry-issued challenges (nonces) for proof of possession; one use each."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, delete, insert, select, update

from registry.store._internal import checks
from registry.store._internal.unit import Unit
from registry.store.errors import FailedPrecondition, InvalidArgument, NotFound
from registry.store.records import ChallengeRecord
from registry.store.schema import NAME_LEN, Challenge

_T = cast(Table, Challenge.__table__)
_COLS = tuple(_T.c)
_INSERT = insert(_T)


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
        row = self._unit.execute(select(*_COLS).where(_T.c.nonce == nonce)).first()
        return None if row is None else _record(row)


class ChallengeRepository(ChallengeReader):
    def create(
        self, *, nonce: str, purpose: str, trust_domain: str, expires_at: datetime
    ) -> ChallengeRecord:
        now = self._unit.now
        expires_at = checks.aware("expires_at", expires_at)
        if expires_at <= now:
            raise InvalidArgument("expires_at must be in the future")
        values = {
            "nonce": checks.text("nonce", nonce, 128),
            "purpose": checks.text("purpose", purpose, 64),
            "trust_domain": checks.text("trust_domain", trust_domain, NAME_LEN),
            "created_at": now,
            "expires_at": expires_at,
            "used_at": None,
        }
        self._unit.execute(_INSERT, values)
        return ChallengeRecord(nonce, purpose, trust_domain, now, expires_at, None)

    def consume(self, nonce: str, *, purpose: str, trust_domain: str) -> ChallengeRecord:
        """Use a challenge once, atomically, for the purpose and trust domain it was
        issued for. Unknown -> NotFound; used, expired or issued for something
        else -> FailedPrecondition."""
        now = self._unit.now
        stmt = (
            update(_T)
            .where(
                _T.c.nonce == nonce,
                _T.c.purpose == purpose,
                _T.c.trust_domain == trust_domain,
                _T.c.used_at.is_(None),
                _T.c.expires_at > now,
            )
            .values(used_at=now)
            .returning(*_COLS)
        )
        row = self._unit.execute(stmt).first()
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

    def purge_expired(self, before: datetime | None = None) -> int:
        """Delete challenges that expired before ``before`` (default: now)."""
        cutoff = checks.aware("before", before or self._unit.now)
        result = self._unit.execute(delete(_T).where(_T.c.expires_at < cutoff))
        return int(result.rowcount)
