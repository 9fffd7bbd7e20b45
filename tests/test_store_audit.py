"""The hash-chained audit trail: it verifies, and any direct tampering is
reported at the row it touched — on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _store_support import make_store, store_pg_database, store_sqlite_template  # noqa: F401
from sqlalchemy import delete, update

from registry.store import GENESIS_HASH, Store, StoreError, verify_audit_chain
from registry.store.audit import record_hash
from registry.store.schema import AuditEntry, SequenceCounter

T0 = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
AUDIT = AuditEntry.__table__


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    ticks = iter(range(10_000))
    s = make_store(request, tmp_path, lambda: T0 + timedelta(seconds=next(ticks)))
    yield s
    s.close()


def _fill(store: Store, n: int = 12) -> None:
    for i in range(1, n + 1, 2):
        # Two entries per transaction, so chaining inside one transaction is covered.
        with store.transaction() as tx:
            tx.audit.append("operator:alice", "agent.revoke", f"did:mesh:a{i}", {"i": i})
            tx.audit.append("scheduler", "ring.change", f"did:mesh:a{i}", {"from": 2, "to": 3})


def _tamper(store: Store, statement: Any) -> None:
    with store.engine.begin() as conn:
        conn.execute(statement)


def test_empty_trail_verifies(store: Store) -> None:
    assert tuple(verify_audit_chain(store)) == (True, None, 0)


def test_trail_verifies_and_links(store: Store) -> None:
    _fill(store)
    ok, bad, count = verify_audit_chain(store)
    assert (ok, bad, count) == (True, None, 12)
    rows = store.audit_rows(limit=100)
    assert [r.seq for r in rows] == list(range(1, 13))
    assert rows[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    assert store.audit_rows(after_seq=10) == rows[10:]


def test_hash_is_the_documented_canonical_encoding(store: Store) -> None:
    with store.transaction() as tx:
        tx.audit.append("op", "agent.register", "did:mesh:x", {"b": [1, "é"], "a": None})
    stored = store.audit_rows()[0]
    assert (stored.seq, stored.actor, stored.subject) == (1, "op", "did:mesh:x")
    doc = {
        "v": 1,
        "seq": 1,
        "at": stored.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": "op",
        "action": "agent.register",
        "subject": "did:mesh:x",
        "details": {"a": None, "b": [1, "é"]},
        "prev_hash": "0" * 64,
    }
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert stored.hash == hashlib.sha256(canonical.encode()).hexdigest()
    # Microseconds survive storage on both back ends (the hash covers them).
    assert stored.at.microsecond == T0.microsecond and stored.at.tzinfo == UTC


def test_awkward_json_round_trips_and_verifies(store: Store) -> None:
    details = {
        "score": 0.1,
        "neg_zero": -0.0,
        "tiny": 2.5e-7,
        "big": 2**53 + 1,
        "text": 'ünïcødé ✓ "quoted" \\ back',
        "nested": {"z": [1, 2.0, True, None], "a": {}},
    }
    with store.transaction() as tx:
        tx.audit.append("op", "x", "s", details)
    assert verify_audit_chain(store).ok


@pytest.mark.parametrize(
    "column, value",
    [
        ("actor", "operator:mallory"),
        ("action", "agent.register"),
        ("subject", "did:mesh:someone-else"),
        ("details", {"i": 999}),
        ("at", T0 - timedelta(days=1)),
        ("prev_hash", "f" * 64),
        ("hash", "0" * 64),
    ],
)
def test_tampering_with_any_column_is_reported_at_that_row(
    store: Store, column: str, value: object
) -> None:
    _fill(store)
    _tamper(store, update(AUDIT).where(AUDIT.c.seq == 7).values({column: value}))
    ok, bad, count = verify_audit_chain(store)
    assert (ok, bad, count) == (False, 7, 6)


def test_rewriting_a_row_with_a_fresh_hash_breaks_the_next_link(store: Store) -> None:
    _fill(store)
    row = store.audit_rows(after_seq=4, limit=1)[0]
    forged = replace(row, actor="mallory")
    _tamper(
        store,
        update(AUDIT).where(AUDIT.c.seq == 5).values(actor="mallory", hash=record_hash(forged)),
    )
    assert tuple(verify_audit_chain(store)) == (False, 6, 5)


def test_deleted_rows_are_reported(store: Store) -> None:
    _fill(store)
    _tamper(store, delete(AUDIT).where(AUDIT.c.seq == 3))
    assert tuple(verify_audit_chain(store)) == (False, 3, 2)


def test_truncated_tail_is_reported(store: Store) -> None:
    _fill(store)
    _tamper(store, delete(AUDIT).where(AUDIT.c.seq >= 11))
    assert tuple(verify_audit_chain(store)) == (False, 11, 10)


def test_verification_pages_through_long_trails(store: Store) -> None:
    _fill(store, 30)
    assert tuple(verify_audit_chain(store, batch_size=7)) == (True, None, 30)
    _tamper(store, update(AUDIT).where(AUDIT.c.seq == 23).values(actor="x"))
    assert tuple(verify_audit_chain(store, batch_size=7)) == (False, 23, 22)


def test_appending_after_damage_refuses(store: Store) -> None:
    _fill(store, 4)
    _tamper(store, delete(AUDIT).where(AUDIT.c.seq == 4))
    with pytest.raises(StoreError, match="damaged"), store.transaction() as tx:
        tx.audit.append("op", "x", "s")
    counter = SequenceCounter.__table__
    with store.engine.connect() as conn:
        assert conn.execute(counter.select().where(counter.c.name == "audit")).one().value == 4
