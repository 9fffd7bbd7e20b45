"""Issued SVIDs, for audit and renewal accounting."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, func, insert, select

from registry.store._internal import checks
from registry.store._internal.bulk import MultiRowInsert
from registry.store._internal.unit import Unit
from registry.store.errors import InvalidArgument, NotFound
from registry.store.records import SvidRecord
from registry.store.schema import DID_LEN, SVID_KINDS, Svid

_T = cast(Table, Svid.__table__)
_COLS = tuple(_T.c)
_INSERT = insert(_T)
_BY_SERIAL = select(*_COLS).where(_T.c.serial == bindparam("serial"))
_INSERT_MANY = MultiRowInsert(
    _T, ("serial", "did", "kind", "not_before", "not_after", "issued_at")
)


def _record(row: Row[Any]) -> SvidRecord:
    m = row._mapping
    return SvidRecord(
        serial=m["serial"],
        did=m["did"],
        kind=m["kind"],
        not_before=m["not_before"],
        not_after=m["not_after"],
        issued_at=m["issued_at"],
    )


class SvidReader:
    def __init__(self, unit: Unit) -> None:
        self._unit = unit

    def find(self, serial: str) -> SvidRecord | None:
        row = self._unit.execute(_BY_SERIAL, {"serial": serial}).first()
        return None if row is None else _record(row)

    def get(self, serial: str) -> SvidRecord:
        record = self.find(serial)
        if record is None:
            raise NotFound(f"no SVID with serial {serial!r} was recorded")
        return record

    def list_for_agent(self, did: str, *, limit: int = 100) -> list[SvidRecord]:
        """The agent's SVIDs, newest first."""
        query = (
            select(*_COLS)
            .where(_T.c.did == did)
            .order_by(_T.c.issued_at.desc(), _T.c.serial)
            .limit(checks.integer("limit", limit, 1, 10_000))
        )
        return [_record(r) for r in self._unit.execute(query)]

    def count_issued_since(self, did: str, since: datetime, *, kind: str | None = None) -> int:
        query = select(func.count()).where(
            _T.c.did == did, _T.c.issued_at >= checks.aware("since", since)
        )
        if kind is not None:
            query = query.where(_T.c.kind == checks.one_of("kind", kind, SVID_KINDS))
        return int(self._unit.execute(query).scalar_one())


class SvidRepository(SvidReader):
    def record(
        self,
        *,
        serial: str,
        did: str,
        kind: str,
        not_before: datetime,
        not_after: datetime,
        issued_at: datetime | None = None,
    ) -> SvidRecord:
        """Record an issued SVID: X.509 serial as lowercase hex, or a JWT-SVID's id."""
        values = self._values(serial, did, kind, not_before, not_after, issued_at)
        self._unit.execute(_INSERT, values)
        return SvidRecord(
            values["serial"], did, kind, values["not_before"], values["not_after"],
            values["issued_at"],
        )

    def record_many(self, svids: Sequence[tuple[str, str, str, datetime, datetime]]) -> None:
        """:meth:`record` for many ``(serial, did, kind, not_before, not_after)`` issued
        now, in one statement; any refused row refuses them all."""
        if not svids:
            return
        unit = self._unit
        time = unit.form.time
        now = time(unit.now)
        rows = []
        for svid in svids:
            v = self._values(*svid, unit.now)
            rows.append(
                (v["serial"], v["did"], v["kind"], time(v["not_before"]),
                 time(v["not_after"]), now)
            )
        _INSERT_MANY.execute(unit, rows)

    def _values(
        self,
        serial: str,
        did: str,
        kind: str,
        not_before: datetime,
        not_after: datetime,
        issued_at: datetime | None,
    ) -> dict[str, Any]:
        not_before = checks.aware("not_before", not_before)
        not_after = checks.aware("not_after", not_after)
        if not_after <= not_before:
            raise InvalidArgument("not_after must be later than not_before")
        return {
            "serial": checks.text("serial", serial, 128),
            "did": checks.text("did", did, DID_LEN),
            "kind": checks.one_of("kind", kind, SVID_KINDS),
            "not_before": not_before,
            "not_after": not_after,
            "issued_at": checks.aware("issued_at", issued_at or self._unit.now),
        }
