"""One-time join tokens. Only SHA-256(secret) is stored; see ``hash_token``."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, insert, select, update

from registry.store._internal import bulk, checks
from registry.store._internal.types import driver_form
from registry.store._internal.unit import Unit
from registry.store.errors import FailedPrecondition, InvalidArgument, NotFound
from registry.store.records import JoinTokenRecord
from registry.store.schema import DID_LEN, NAME_LEN, JoinToken

_T = cast(Table, JoinToken.__table__)
_COLS = tuple(c for c in _T.c if c.key != "token_hash")
_INSERT = insert(_T)
_BY_ID = select(*_COLS).where(_T.c.id == bindparam("id"))
_BY_HASH = select(*_COLS).where(_T.c.token_hash == bindparam("token_hash"))
# Many at once, in one statement: each usable token of the list is marked used by
# its DID, and RETURNING says which were. The statement's own row locks decide
# between concurrent users (PostgreSQL re-checks the conditions after waiting).
_CONSUME_MANY_COLUMNS = ("token_hash", "id", "agent_name", "created_by", "created_at",
                         "expires_at")


def _consume_many_sql(dialect: str, rows: int) -> str:
    mark = driver_form(dialect).placeholder
    table = bulk.quoted(dialect, _T.name)
    # Identifiers from the schema and placeholders only: no value is spelled in the SQL.
    return (
        f"UPDATE {table} SET used_at = {mark}, used_by_did = uses.column2 "  # noqa: S608
        f"FROM (VALUES {bulk.values_list(dialect, 2, rows)}) AS uses "
        f"WHERE {table}.token_hash = uses.column1 AND {table}.used_at IS NULL "
        f"AND {table}.revoked_at IS NULL AND {table}.expires_at > {mark} "
        f"RETURNING {', '.join(_CONSUME_MANY_COLUMNS)}"
    )


_CONSUME = (
    update(_T)
    .where(
        _T.c.token_hash == bindparam("b_token_hash"),
        _T.c.used_at.is_(None),
        _T.c.revoked_at.is_(None),
        _T.c.expires_at > bindparam("b_now"),
    )
    .values(used_at=bindparam("b_used_at"), used_by_did=bindparam("b_used_by_did"))
    .returning(*_COLS)
)


def hash_token(secret: str | bytes) -> str:
    """The stored form of a join token secret: lowercase hex SHA-256."""
    data = secret.encode("utf-8") if isinstance(secret, str) else secret
    if not data:
        raise InvalidArgument("a join token secret must not be empty")
    return hashlib.sha256(data).hexdigest()


def _record(row: Row[Any]) -> JoinTokenRecord:
    m = row._mapping
    return JoinTokenRecord(
        id=m["id"],
        agent_name=m["agent_name"],
        created_by=m["created_by"],
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        used_at=m["used_at"],
        used_by_did=m["used_by_did"],
        revoked_at=m["revoked_at"],
    )


class TokenReader:
    def __init__(self, unit: Unit) -> None:
        self._unit = unit

    def find(self, token_id: str) -> JoinTokenRecord | None:
        row = self._unit.execute(_BY_ID, {"id": token_id}).first()
        return None if row is None else _record(row)

    def get(self, token_id: str) -> JoinTokenRecord:
        record = self.find(token_id)
        if record is None:
            raise NotFound(f"no join token with id {token_id!r}")
        return record

    def find_by_hash(self, token_hash: str) -> JoinTokenRecord | None:
        row = self._unit.execute(_BY_HASH, {"token_hash": token_hash}).first()
        return None if row is None else _record(row)

    def list(self, *, usable_only: bool = False, limit: int = 1000) -> list[JoinTokenRecord]:
        """Tokens newest first; ``usable_only`` keeps those not used, revoked or expired."""
        query = select(*_COLS)
        if usable_only:
            query = query.where(
                _T.c.used_at.is_(None), _T.c.revoked_at.is_(None), _T.c.expires_at > self._unit.now
            )
        query = query.order_by(_T.c.created_at.desc(), _T.c.id).limit(
            checks.integer("limit", limit, 1, 10_000)
        )
        return [_record(r) for r in self._unit.execute(query)]


class TokenRepository(TokenReader):
    def create(
        self,
        *,
        token_hash: str,
        agent_name: str,
        created_by: str,
        expires_at: datetime,
        token_id: str | None = None,
    ) -> JoinTokenRecord:
        """Store a new join token bound to ``agent_name``. Pass ``hash_token(secret)``."""
        now = self._unit.now
        expires_at = checks.aware("expires_at", expires_at)
        if expires_at <= now:
            raise InvalidArgument("expires_at must be in the future")
        values = {
            "id": checks.text("token_id", token_id or uuid.uuid4().hex, 64),
            "token_hash": checks.hex_digest("token_hash", token_hash),
            "agent_name": checks.text("agent_name", agent_name, NAME_LEN),
            "created_by": checks.text("created_by", created_by, NAME_LEN),
            "created_at": now,
            "expires_at": expires_at,
            "used_at": None,
            "used_by_did": None,
            "revoked_at": None,
        }
        self._unit.execute(_INSERT, values)
        return JoinTokenRecord(
            id=values["id"],  # type: ignore[arg-type]
            agent_name=agent_name,
            created_by=created_by,
            created_at=now,
            expires_at=expires_at,
            used_at=None,
            used_by_did=None,
            revoked_at=None,
        )

    def consume(self, token_hash: str, *, used_by_did: str) -> JoinTokenRecord:
        """Use a token once, atomically.

        One conditional UPDATE (unused, unrevoked, unexpired) decides: of any
        number of concurrent registrations presenting the same token exactly
        one gets the row back. The others get FailedPrecondition (used, revoked
        or expired) and an unknown token NotFound. A retry by the winner can
        recognise itself by ``find_by_hash(h).used_by_did``.
        """
        token_hash = checks.hex_digest("token_hash", token_hash)
        did = checks.text("used_by_did", used_by_did, DID_LEN)
        now = self._unit.now
        row = self._unit.execute(
            _CONSUME,
            {"b_token_hash": token_hash, "b_now": now, "b_used_at": now, "b_used_by_did": did},
        ).first()
        if row is not None:
            return _record(row)
        current = self.find_by_hash(token_hash)
        if current is None:
            raise NotFound("unknown join token", hint="ask an operator for a new join token")
        raise FailedPrecondition(_why_unusable(current, now), hint="ask an operator for a new one")

    def consume_many(self, uses: Sequence[tuple[str, str]]) -> dict[str, JoinTokenRecord]:
        """:meth:`consume` for many ``(token_hash, used_by_did)`` pairs in one
        statement; returns ``{token_hash: record}`` for the tokens consumed. A
        token that is unknown or not usable is left alone (``consume`` says why);
        a hash given twice is consumed once, for its first pair."""
        unit = self._unit
        now = unit.now
        dids: dict[str, str] = {}
        for token_hash, did in uses:
            dids.setdefault(
                checks.hex_digest("token_hash", token_hash),
                checks.text("used_by_did", did, DID_LEN),
            )
        if not dids:
            return {}
        at = unit.form.time(now)
        read_time = unit.form.read_time
        taken: dict[str, JoinTokenRecord] = {}
        pairs = list(dids.items())
        step = bulk.MAX_PARAMETERS // 2 - 1
        for start in range(0, len(pairs), step):
            chunk = pairs[start : start + step]
            params: list[Any] = [at]
            for pair in chunk:
                params += pair
            params.append(at)
            sql = _consume_many_sql(unit.dialect, len(chunk))
            for h, token_id, name, created_by, created_at, expires_at in unit.driver_execute(
                sql, params
            ):
                taken[h] = JoinTokenRecord(
                    id=token_id,
                    agent_name=name,
                    created_by=created_by,
                    created_at=read_time(created_at),
                    expires_at=read_time(expires_at),
                    used_at=now,
                    used_by_did=dids[h],
                    revoked_at=None,
                )
        return taken

    def revoke(self, token_id: str) -> JoinTokenRecord:
        """Revoke an unused token; revoking a used or revoked token raises FailedPrecondition."""
        stmt = (
            update(_T)
            .where(_T.c.id == token_id, _T.c.used_at.is_(None), _T.c.revoked_at.is_(None))
            .values(revoked_at=self._unit.now)
            .returning(*_COLS)
        )
        row = self._unit.execute(stmt).first()
        if row is not None:
            return _record(row)
        current = self.get(token_id)
        raise FailedPrecondition(_why_unusable(current, self._unit.now))


def _why_unusable(token: JoinTokenRecord, now: datetime) -> str:
    if token.used_at is not None:
        return f"join token {token.id} was already used at {token.used_at.isoformat()}"
    if token.revoked_at is not None:
        return f"join token {token.id} was revoked at {token.revoked_at.isoformat()}"
    if token.expires_at <= now:
        return f"join token {token.id} expired at {token.expires_at.isoformat()}"
    return f"join token {token.id} is not usable"
