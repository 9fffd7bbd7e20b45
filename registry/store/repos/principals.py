"""Principals: operators, reporters, enforcers, agents, with roles and a
credential hash (the server decides what the credential is and how to hash it)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Row, Table, insert, select, update

from registry.store._internal import checks
from registry.store._internal.unit import Unit
from registry.store.errors import FailedPrecondition, InvalidArgument, NotFound
from registry.store.records import PrincipalRecord
from registry.store.schema import NAME_LEN, PRINCIPAL_KINDS, Principal

_T = cast(Table, Principal.__table__)
_COLS = tuple(_T.c)
_INSERT = insert(_T)


def _record(row: Row[Any]) -> PrincipalRecord:
    m = row._mapping
    return PrincipalRecord(
        id=m["id"],
        kind=m["kind"],
        name=m["name"],
        roles=tuple(m["roles"] or ()),
        credential_hash=m["credential_hash"],
        created_at=m["created_at"],
        revoked_at=m["revoked_at"],
    )


def _roles(roles: Iterable[str]) -> list[str]:
    if isinstance(roles, str):
        raise InvalidArgument("roles must be a list of role names, not one string")
    cleaned = sorted({checks.text("role", r, 64) for r in roles})
    return cleaned


class PrincipalReader:
    def __init__(self, unit: Unit) -> None:
        self._unit = unit

    def find(self, principal_id: str) -> PrincipalRecord | None:
        row = self._unit.execute(select(*_COLS).where(_T.c.id == principal_id)).first()
        return None if row is None else _record(row)

    def get(self, principal_id: str) -> PrincipalRecord:
        record = self.find(principal_id)
        if record is None:
            raise NotFound(f"no principal with id {principal_id!r}")
        return record

    def find_by_credential(self, credential_hash: str) -> PrincipalRecord | None:
        """The principal holding this credential, revoked or not (check ``revoked_at``)."""
        row = self._unit.execute(
            select(*_COLS).where(_T.c.credential_hash == credential_hash)
        ).first()
        return None if row is None else _record(row)

    def find_by_name(self, kind: str, name: str) -> PrincipalRecord | None:
        row = self._unit.execute(
            select(*_COLS).where(
                _T.c.kind == checks.one_of("kind", kind, PRINCIPAL_KINDS), _T.c.name == name
            )
        ).first()
        return None if row is None else _record(row)

    def get_by_name(self, kind: str, name: str) -> PrincipalRecord:
        record = self.find_by_name(kind, name)
        if record is None:
            raise NotFound(f"no {kind} named {name!r}")
        return record

    def list(
        self, *, kind: str | None = None, include_revoked: bool = False
    ) -> list[PrincipalRecord]:
        query = select(*_COLS)
        if kind is not None:
            query = query.where(_T.c.kind == checks.one_of("kind", kind, PRINCIPAL_KINDS))
        if not include_revoked:
            query = query.where(_T.c.revoked_at.is_(None))
        query = query.order_by(_T.c.kind, _T.c.name)
        return [_record(r) for r in self._unit.execute(query)]


class PrincipalRepository(PrincipalReader):
    def create(
        self,
        *,
        kind: str,
        name: str,
        roles: Iterable[str],
        credential_hash: str,
        principal_id: str | None = None,
    ) -> PrincipalRecord:
        now = self._unit.now
        values = {
            "id": checks.text("principal_id", principal_id or uuid.uuid4().hex, 64),
            "kind": checks.one_of("kind", kind, PRINCIPAL_KINDS),
            "name": checks.text("name", name, NAME_LEN),
            "roles": _roles(roles),
            "credential_hash": checks.text("credential_hash", credential_hash, 128),
            "created_at": now,
            "revoked_at": None,
        }
        self._unit.execute(_INSERT, values)
        return PrincipalRecord(
            id=values["id"],  # type: ignore[arg-type]
            kind=kind,
            name=name,
            roles=tuple(values["roles"]),  # type: ignore[arg-type]
            credential_hash=credential_hash,
            created_at=now,
            revoked_at=None,
        )

    def set_roles(self, principal_id: str, roles: Iterable[str]) -> PrincipalRecord:
        stmt = (
            update(_T).where(_T.c.id == principal_id).values(roles=_roles(roles)).returning(*_COLS)
        )
        row = self._unit.execute(stmt).first()
        if row is None:
            raise NotFound(f"no principal with id {principal_id!r}")
        return _record(row)

    def revoke(self, principal_id: str) -> PrincipalRecord:
        stmt = (
            update(_T)
            .where(_T.c.id == principal_id, _T.c.revoked_at.is_(None))
            .values(revoked_at=self._unit.now)
            .returning(*_COLS)
        )
        row = self._unit.execute(stmt).first()
        if row is not None:
            return _record(row)
        self.get(principal_id)
        raise FailedPrecondition(f"principal {principal_id} is already revoked")
