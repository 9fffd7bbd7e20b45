"""Agents: one row per did:mesh identity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Row, Table, and_, bindparam, func, insert, or_, select, update

from registry.store._internal import checks, paging
from registry.store._internal.bulk import MultiRowInsert
from registry.store._internal.unit import Unit
from registry.store.errors import FailedPrecondition, NotFound
from registry.store.records import AgentRecord, Page
from registry.store.schema import (
    AGENT_STATUSES,
    DID_LEN,
    NAME_LEN,
    SPIFFE_ID_LEN,
    Agent,
)

_T = cast(Table, Agent.__table__)
_COLS = tuple(_T.c)
_INSERT = insert(_T)
_BY_DID = select(*_COLS).where(_T.c.did == bindparam("did"))
_BY_SPIFFE_ID = select(*_COLS).where(_T.c.spiffe_id == bindparam("spiffe_id"))
# Many agents at once; one whose DID or SPIFFE ID exists is skipped, and RETURNING says which.
_INSERT_NEW = MultiRowInsert(
    _T,
    ("did", "name", "spiffe_id", "status", "granted_ring", "metadata", "created_at",
     "updated_at", "revoked_at", "revoke_reason"),
    on_conflict="ON CONFLICT DO NOTHING",
    returning=("did",),
)


def _record(row: Row[Any]) -> AgentRecord:
    m = row._mapping
    return AgentRecord(
        did=m["did"],
        name=m["name"],
        spiffe_id=m["spiffe_id"],
        status=m["status"],
        granted_ring=m["granted_ring"],
        metadata=dict(m["metadata"] or {}),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        revoked_at=m["revoked_at"],
        revoke_reason=m["revoke_reason"],
    )


class AgentReader:
    def __init__(self, unit: Unit) -> None:
        self._unit = unit

    def find(self, did: str) -> AgentRecord | None:
        row = self._unit.execute(_BY_DID, {"did": did}).first()
        return None if row is None else _record(row)

    def get(self, did: str) -> AgentRecord:
        record = self.find(did)
        if record is None:
            raise NotFound(f"no agent {did!r} is registered")
        return record

    def find_by_spiffe_id(self, spiffe_id: str) -> AgentRecord | None:
        row = self._unit.execute(_BY_SPIFFE_ID, {"spiffe_id": spiffe_id}).first()
        return None if row is None else _record(row)

    def list(
        self, *, status: str | None = None, page_size: int = 100, page_token: str | None = None
    ) -> Page[AgentRecord]:
        """Agents in registration order (created_at, then did), one page at a time."""
        size = paging.page_size(page_size)
        query = select(*_COLS)
        if status is not None:
            query = query.where(_T.c.status == checks.one_of("status", status, AGENT_STATUSES))
        if page_token:
            after_t, after_did = paging.decode(page_token)
            # Row-value comparison spelled out: portable to every engine's planner.
            query = query.where(
                or_(
                    _T.c.created_at > after_t,
                    and_(_T.c.created_at == after_t, _T.c.did > after_did),
                )
            )
        query = query.order_by(_T.c.created_at, _T.c.did).limit(size + 1)
        rows = self._unit.execute(query).all()
        items = [_record(r) for r in rows[:size]]
        token = None
        if len(rows) > size:
            last = items[-1]
            token = paging.encode(last.created_at, last.did)
        return Page(items=items, next_page_token=token)

    def count(self, *, status: str | None = None) -> int:
        query = select(func.count()).select_from(_T)
        if status is not None:
            query = query.where(_T.c.status == checks.one_of("status", status, AGENT_STATUSES))
        return int(self._unit.execute(query).scalar_one())


class AgentRepository(AgentReader):
    def create(
        self,
        *,
        did: str,
        name: str,
        spiffe_id: str,
        granted_ring: int = 2,
        metadata: dict[str, Any] | None = None,
    ) -> AgentRecord:
        """Insert an active agent. A duplicate DID or SPIFFE ID raises AlreadyExists."""
        now = self._unit.now
        values = self._new_values(did, name, spiffe_id, granted_ring, metadata)
        self._unit.execute(_INSERT, values)
        return AgentRecord(
            did=did,
            name=name,
            spiffe_id=spiffe_id,
            status="active",
            granted_ring=granted_ring,
            metadata=values["metadata"],
            created_at=now,
            updated_at=now,
            revoked_at=None,
            revoke_reason=None,
        )

    def create_many(
        self, agents: Sequence[tuple[str, str, str, dict[str, Any] | None]]
    ) -> set[str]:
        """Insert many active agents ``(did, name, spiffe_id, metadata)`` (granted
        ring 2) in one statement; returns the DIDs inserted. One whose DID or
        SPIFFE ID is already registered is skipped, not an error (``create``
        says AlreadyExists for it)."""
        if not agents:
            return set()
        unit = self._unit
        now = unit.form.time(unit.now)
        document = unit.form.json
        rows = [
            (
                checks.text("did", did, DID_LEN),
                checks.text("name", name, NAME_LEN),
                checks.text("spiffe_id", spiffe_id, SPIFFE_ID_LEN),
                "active",
                2,
                document(checks.json_object("metadata", metadata)),
                now,
                now,
                None,
                None,
            )
            for did, name, spiffe_id, metadata in agents
        ]
        return {str(row[0]) for row in _INSERT_NEW.execute(unit, rows)}

    def _new_values(
        self,
        did: str,
        name: str,
        spiffe_id: str,
        granted_ring: int,
        metadata: dict[str, Any] | None,
    ) -> dict[str, Any]:
        now = self._unit.now
        return {
            "did": checks.text("did", did, DID_LEN),
            "name": checks.text("name", name, NAME_LEN),
            "spiffe_id": checks.text("spiffe_id", spiffe_id, SPIFFE_ID_LEN),
            "status": "active",
            "granted_ring": checks.integer("granted_ring", granted_ring, 0, 3),
            "metadata": checks.json_object("metadata", metadata),
            "created_at": now,
            "updated_at": now,
            "revoked_at": None,
            "revoke_reason": None,
        }

    def revoke(self, did: str, reason: str) -> AgentRecord:
        """active -> revoked. Any other current status raises FailedPrecondition."""
        return self._transition(did, "revoked", ("active",), reason)

    def terminate(self, did: str, reason: str) -> AgentRecord:
        """active|revoked -> terminated (the kill switch; final)."""
        return self._transition(did, "terminated", ("active", "revoked"), reason)

    def _transition(
        self, did: str, target: str, allowed_from: tuple[str, ...], reason: str
    ) -> AgentRecord:
        reason = checks.text("reason", reason, 1024, empty_ok=True)
        now = self._unit.now
        # Conditional UPDATE: of two concurrent transitions exactly one applies.
        stmt = (
            update(_T)
            .where(_T.c.did == did, _T.c.status.in_(allowed_from))
            .values(
                status=target,
                revoked_at=func.coalesce(_T.c.revoked_at, now),
                revoke_reason=reason,
                updated_at=now,
            )
            .returning(*_COLS)
        )
        row = self._unit.execute(stmt).first()
        if row is not None:
            return _record(row)
        current = self.get(did)
        raise FailedPrecondition(
            f"agent {did} is {current.status}; only an agent that is "
            f"{' or '.join(allowed_from)} can become {target}"
        )

    def set_granted_ring(self, did: str, ring: int) -> AgentRecord:
        """The ring an operator grants (0 kernel .. 3 sandbox)."""
        ring = checks.integer("ring", ring, 0, 3)
        return self._update(did, granted_ring=ring)

    def set_metadata(self, did: str, metadata: dict[str, Any]) -> AgentRecord:
        return self._update(did, metadata=checks.json_object("metadata", metadata))

    def _update(self, did: str, **values: Any) -> AgentRecord:
        stmt = (
            update(_T)
            .where(_T.c.did == did)
            .values(updated_at=self._unit.now, **values)
            .returning(*_COLS)
        )
        row = self._unit.execute(stmt).first()
        if row is None:
            raise NotFound(f"no agent {did!r} is registered")
        return _record(row)
