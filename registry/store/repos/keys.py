"""Agent keys (one row per key index under a DID) and the signed key log."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, insert, select, update

from mesh.ed25519 import is_acceptable_public_key
from registry.store._internal import checks
from registry.store._internal.bulk import MultiRowInsert
from registry.store._internal.unit import Unit
from registry.store.errors import FailedPrecondition, InvalidArgument, NotFound
from registry.store.records import AgentKeyRecord
from registry.store.schema import DID_LEN, KID_LEN, AgentKey, KeyHistory

_K = cast(Table, AgentKey.__table__)
_H = cast(Table, KeyHistory.__table__)
_COLS = tuple(_K.c)
_INSERT = insert(_K)
_BY_KID = select(*_COLS).where(_K.c.kid == bindparam("kid"))
_INSERT_HISTORY = insert(_H)
_INSERT_MANY = MultiRowInsert(
    _K, ("did", "key_index", "kid", "public_key", "valid_from", "rotated_at", "compromised_at")
)
_INSERT_HISTORIES = MultiRowInsert(_H, ("did", "history", "updated_at"))


def _record(row: Row[Any]) -> AgentKeyRecord:
    m = row._mapping
    return AgentKeyRecord(
        did=m["did"],
        index=m["key_index"],
        kid=m["kid"],
        public_key=bytes(m["public_key"]),
        valid_from=m["valid_from"],
        rotated_at=m["rotated_at"],
        compromised_at=m["compromised_at"],
    )


class KeyReader:
    def __init__(self, unit: Unit) -> None:
        self._unit = unit

    def find_by_kid(self, kid: str) -> AgentKeyRecord | None:
        row = self._unit.execute(_BY_KID, {"kid": kid}).first()
        return None if row is None else _record(row)

    def get_by_kid(self, kid: str) -> AgentKeyRecord:
        record = self.find_by_kid(kid)
        if record is None:
            raise NotFound(f"no key with kid {kid!r} is registered")
        return record

    def list_for_agent(self, did: str) -> list[AgentKeyRecord]:
        """Every key of an agent, inception (index 0) first."""
        query = select(*_COLS).where(_K.c.did == did).order_by(_K.c.key_index)
        return [_record(r) for r in self._unit.execute(query)]

    def current(self, did: str) -> AgentKeyRecord | None:
        """The agent's newest key (highest index), or None if it has none."""
        query = select(*_COLS).where(_K.c.did == did).order_by(_K.c.key_index.desc()).limit(1)
        row = self._unit.execute(query).first()
        return None if row is None else _record(row)

    def history(self, did: str) -> str | None:
        """The signed key log (JSON text) exactly as stored, or None."""
        row = self._unit.execute(select(_H.c.history).where(_H.c.did == did)).first()
        return None if row is None else row[0]


class KeyRepository(KeyReader):
    def add(
        self,
        *,
        did: str,
        index: int,
        kid: str,
        public_key: bytes,
        valid_from: datetime | None = None,
    ) -> AgentKeyRecord:
        """Store a key of an existing agent. Duplicate kid or index raises AlreadyExists;
        an unknown agent raises FailedPrecondition; a weak key raises InvalidArgument."""
        values = self._key_values(did, index, kid, public_key, valid_from)
        self._unit.execute(_INSERT, values)
        return AgentKeyRecord(
            did=did,
            index=index,
            kid=kid,
            public_key=public_key,
            valid_from=values["valid_from"],
            rotated_at=None,
            compromised_at=None,
        )

    def add_many(self, keys: Sequence[tuple[str, int, str, bytes, datetime | None]]) -> None:
        """:meth:`add` for many ``(did, index, kid, public_key, valid_from)`` in one
        statement; any refused row refuses them all (same errors as ``add``)."""
        if not keys:
            return
        unit = self._unit
        time = unit.form.time
        now = time(unit.now)
        rows = []
        for did, index, kid, public_key, valid_from in keys:
            v = self._key_values(did, index, kid, public_key, valid_from)
            rows.append(
                (
                    v["did"], v["key_index"], v["kid"], public_key,
                    now if valid_from is None else time(v["valid_from"]), None, None,
                )
            )
        _INSERT_MANY.execute(unit, rows)

    def _key_values(
        self, did: str, index: int, kid: str, public_key: bytes, valid_from: datetime | None
    ) -> dict[str, Any]:
        if not isinstance(public_key, bytes) or len(public_key) != 32:
            raise InvalidArgument("public_key must be 32 bytes (a raw Ed25519 public key)")
        if not is_acceptable_public_key(public_key):
            raise InvalidArgument("public_key is a weak or non-canonical Ed25519 key")
        return {
            "did": checks.text("did", did, DID_LEN),
            "key_index": checks.integer("index", index, 0, 2**31 - 1),
            "kid": checks.text("kid", kid, KID_LEN),
            "public_key": public_key,
            "valid_from": checks.aware("valid_from", valid_from or self._unit.now),
            "rotated_at": None,
            "compromised_at": None,
        }

    def mark_rotated(self, kid: str, at: datetime | None = None) -> AgentKeyRecord:
        """Record that ``kid`` was superseded by a newer key at ``at`` (default: now)."""
        at = checks.aware("at", at or self._unit.now)
        stmt = (
            update(_K)
            .where(_K.c.kid == kid, _K.c.rotated_at.is_(None))
            .values(rotated_at=at)
            .returning(*_COLS)
        )
        row = self._unit.execute(stmt).first()
        if row is None:
            self.get_by_kid(kid)
            raise FailedPrecondition(f"key {kid} is already marked rotated")
        return _record(row)

    def mark_compromised(self, kid: str, at: datetime | None = None) -> AgentKeyRecord:
        """Record that ``kid`` is compromised as of ``at``; the earliest report wins."""
        at = checks.aware("at", at or self._unit.now)
        stmt = (
            update(_K)
            .where(_K.c.kid == kid, _K.c.compromised_at.is_(None))
            .values(compromised_at=at)
            .returning(*_COLS)
        )
        row = self._unit.execute(stmt).first()
        if row is None:
            return self.get_by_kid(kid)
        return _record(row)

    def put_history(self, did: str, history_json: str) -> None:
        """Store (or replace) the agent's signed key log, verbatim.

        ``history_json`` is the document from ``KeyHistory.to_json()``; it must
        be a JSON object. Checking its signatures is the caller's job.
        """
        doc = _history_document(history_json)
        result = self._unit.execute(
            update(_H).where(_H.c.did == did).values(history=doc, updated_at=self._unit.now)
        )
        if result.rowcount == 0:
            self._unit.execute(
                _INSERT_HISTORY,
                {
                    "did": checks.text("did", did, DID_LEN),
                    "history": doc,
                    "updated_at": self._unit.now,
                },
            )

    def add_histories(self, histories: Sequence[tuple[str, str]]) -> None:
        """Store the first signed key log of many agents ``(did, history_json)`` that
        have none yet, in one statement (an existing one raises AlreadyExists)."""
        if histories:
            unit = self._unit
            now = unit.form.time(unit.now)
            _INSERT_HISTORIES.execute(
                unit,
                [
                    (checks.text("did", did, DID_LEN), _history_document(doc), now)
                    for did, doc in histories
                ],
            )


def _history_document(history_json: str) -> str:
    doc = checks.text("history_json", history_json, 1_000_000)
    try:
        parsed = json.loads(doc)
    except ValueError as error:
        raise InvalidArgument("history_json is not valid JSON") from error
    if not isinstance(parsed, dict):
        raise InvalidArgument("history_json must be a JSON object")
    return doc
