"""The set-based repository calls write on the driver directly (``_internal.bulk``)
with values converted by ``types.DriverForm``: the rows they store must be exactly
the rows the one-row calls (through SQLAlchemy's bind processing) store, on
SQLite and PostgreSQL, and the converted values exactly what the column types'
bind processors give."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from _store_support import make_store, store_pg_database, store_sqlite_template  # noqa: F401
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite

from registry.store import AlreadyExists, Store, hash_token, verify_audit_chain
from registry.store._internal import bulk
from registry.store._internal.types import UTCDateTime, driver_form, json_type
from registry.store.audit import chain_hashes, entry_hash

T0 = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = make_store(request, tmp_path, clock=lambda: T0)
    yield s
    s.close()


# -- driver forms ----------------------------------------------------------------

_DIALECTS = {"sqlite": sqlite.dialect(), "postgresql": postgresql.psycopg.dialect()}

aware_times = st.builds(
    lambda naive, minutes: naive.replace(tzinfo=timezone(timedelta(minutes=minutes))),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(-23 * 60, 23 * 60),
)
_json_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
)
json_documents = st.recursive(
    st.none() | st.booleans() | st.integers() | _json_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_json_text, inner, max_size=3),
    max_leaves=8,
)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
@settings(max_examples=300, deadline=None)
@given(at=aware_times)
def test_times_are_what_the_column_type_binds(dialect: str, at: datetime) -> None:
    d = _DIALECTS[dialect]
    reference = UTCDateTime().dialect_impl(d).bind_processor(d)
    form = driver_form(dialect)
    assert reference is not None
    assert form.time(at) == reference(at)
    assert form.time(at) == form.time(at)  # the remembered value too


@settings(max_examples=200, deadline=None)
@given(at=aware_times)
def test_sqlite_times_read_back_as_the_column_type_reads_them(at: datetime) -> None:
    d = _DIALECTS["sqlite"]
    form = driver_form("sqlite")
    result = UTCDateTime().dialect_impl(d).result_processor(d, None)
    assert result is not None
    stored = form.time(at)
    assert form.read_time(stored) == result(stored) == at
    assert form.read_time(stored).tzinfo is UTC


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_naive_times_are_refused(dialect: str) -> None:
    from registry.store.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="no time zone"):
        driver_form(dialect).time(datetime(2030, 1, 1))


@settings(max_examples=200, deadline=None)
@given(doc=json_documents)
def test_json_is_what_the_column_type_binds(doc: Any) -> None:
    for dialect, d in _DIALECTS.items():
        reference = json_type().dialect_impl(d).bind_processor(d)
        assert reference is not None
        ours, theirs = driver_form(dialect).json(doc), reference(doc)
        if dialect == "postgresql":  # both wrap the document for psycopg
            assert (type(ours), ours.obj) == (type(theirs), theirs.obj)
        else:
            assert ours == theirs


# -- rows: set-based calls against the one-row reference -----------------------------

_TABLES = {
    "agents": "did",
    "agent_keys": "kid",
    "key_histories": "did",
    "join_tokens": "id",
    "challenges": "nonce",
    "svids": "serial",
    "events": "seq",
    "audit_log": "seq",
}
# Children first, so that deleting the reference rows breaks no foreign key.
_DELETE_ORDER = ["svids", "key_histories", "agent_keys", "agents", "join_tokens",
                 "challenges", "events", "audit_log"]


def _rows(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    with store.engine.connect() as conn:
        return {
            table: [tuple(r) for r in conn.exec_driver_sql(
                f"SELECT * FROM {table} ORDER BY {key}"
            )]
            for table, key in _TABLES.items()
        }


def _forget(store: Store) -> None:
    """Delete every row and reset the sequences (to write the same rows again)."""
    with store.engine.begin() as conn:
        for table in _DELETE_ORDER:
            conn.exec_driver_sql(f"DELETE FROM {table}")
        conn.exec_driver_sql("UPDATE sequence_counters SET value = 0")


_HISTORY = '{"did": "did:mesh:a", "entries": [ 1, 2 ]}'
_KEYS = [bytes.fromhex(h) for h in (
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
    "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
)]


def _tokens(tx: Any) -> None:
    for i in range(3):
        tx.tokens.create(
            token_hash=hash_token(f"t{i}"), agent_name=f"name/{i}", created_by="op",
            expires_at=T0 + timedelta(hours=1), token_id=f"id{i}",
        )


def _one_by_one(tx: Any) -> None:
    soon = T0 + timedelta(minutes=5, microseconds=7)
    for i in range(3):
        did = f"did:mesh:a{i}"
        tx.challenges.use(nonce=f"n{i}", purpose="register", trust_domain="td", expires_at=soon)
        tx.tokens.consume(hash_token(f"t{i}"), used_by_did=did)
        tx.agents.create(did=did, name=f"name/{i}", spiffe_id=f"spiffe://td/agent/a{i}",
                         metadata={"team": "x", "n": i} if i else None)
        tx.keys.add(did=did, index=0, kid=f"kid{i}", public_key=_KEYS[i],
                    valid_from=T0 - timedelta(days=i) if i else None)
        if i != 1:
            tx.keys.put_history(did, _HISTORY)
        tx.svids.record(serial=f"5e{i}", did=did, kind="x509", not_before=T0 - timedelta(
            seconds=30), not_after=T0 + timedelta(hours=1, microseconds=i))
        tx.events.append("agent.registered", did, {"did": did, "state": {"ring": 2}})
        tx.audit.append("join-token:x", "agent.register", did, {"kid": f"kid{i}", "ok": True})


def _set_based(tx: Any) -> None:
    soon = T0 + timedelta(minutes=5, microseconds=7)
    dids = [f"did:mesh:a{i}" for i in range(3)]
    assert tx.challenges.use_many(
        [(f"n{i}", "register", "td", soon) for i in range(3)]
    ) == {"n0", "n1", "n2"}
    taken = tx.tokens.consume_many([(hash_token(f"t{i}"), dids[i]) for i in range(3)])
    assert sorted(r.id for r in taken.values()) == ["id0", "id1", "id2"]
    assert tx.agents.create_many(
        [(dids[i], f"name/{i}", f"spiffe://td/agent/a{i}",
          {"team": "x", "n": i} if i else None) for i in range(3)]
    ) == set(dids)
    tx.keys.add_many([(dids[i], 0, f"kid{i}", _KEYS[i], T0 - timedelta(days=i) if i else None)
                      for i in range(3)])
    tx.keys.add_histories([(dids[0], _HISTORY), (dids[2], _HISTORY)])
    tx.svids.record_many([(f"5e{i}", dids[i], "x509", T0 - timedelta(seconds=30),
                           T0 + timedelta(hours=1, microseconds=i)) for i in range(3)])
    for did in dids:
        tx.events.append_at_commit("agent.registered", did, {"did": did, "state": {"ring": 2}})
    for i, did in enumerate(dids):
        tx.audit.append("join-token:x", "agent.register", did,
                                  {"kid": f"kid{i}", "ok": True})


def test_set_based_calls_store_the_rows_the_one_row_calls_store(store: Store) -> None:
    with store.transaction() as tx:
        _tokens(tx)
    with store.transaction() as tx:
        _one_by_one(tx)
    reference = _rows(store)
    assert all(reference[t] for t in _TABLES), "every table has reference rows"
    _forget(store)
    with store.transaction() as tx:
        _tokens(tx)
    with store.transaction() as tx:
        _set_based(tx)
    assert _rows(store) == reference
    assert verify_audit_chain(store).ok


def test_consumed_token_records_match_what_the_store_reads(store: Store) -> None:
    with store.transaction() as tx:
        _tokens(tx)
    with store.transaction() as tx:
        taken = tx.tokens.consume_many([(hash_token("t1"), "did:mesh:z")])
    with store.read() as view:
        assert view.tokens.find_by_hash(hash_token("t1")) == taken[hash_token("t1")]


def test_a_refused_row_refuses_the_statement_with_the_store_error(store: Store) -> None:
    with store.transaction() as tx:
        tx.agents.create(did="did:mesh:a", name="a", spiffe_id="spiffe://td/agent/a")
        tx.keys.add(did="did:mesh:a", index=0, kid="k", public_key=_KEYS[0])
    with pytest.raises(AlreadyExists, match="kid"), store.transaction() as tx:
        tx.agents.create(did="did:mesh:b", name="b", spiffe_id="spiffe://td/agent/b")
        tx.keys.add_many([("did:mesh:b", 0, "k", _KEYS[1], None)])


def test_batches_over_the_parameter_limit_are_split(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "MAX_PARAMETERS", 13)  # two 6-column challenge rows
    soon = T0 + timedelta(minutes=5)
    with store.transaction() as tx:
        _tokens(tx)
    with store.transaction() as tx:
        recorded = tx.challenges.use_many([(f"n{i}", "register", "td", soon) for i in range(7)])
        taken = tx.tokens.consume_many([(hash_token(f"t{i}"), f"did:mesh:{i}") for i in range(3)])
    assert recorded == {f"n{i}" for i in range(7)}
    assert len(taken) == 3
    with store.read() as view:
        assert all(view.challenges.find(f"n{i}") is not None for i in range(7))


def test_chain_hashes_are_the_entry_hashes() -> None:
    entries = [("a", "x.y", "s", {"k": i, "é": [1, None]}) for i in range(4)]
    prev = "0" * 64
    expected = []
    for i, (actor, action, subject, details) in enumerate(entries):
        prev = entry_hash(seq=10 + i, at=T0, actor=actor, action=action, subject=subject,
                          details=details, prev_hash=prev)
        expected.append(prev)
    assert chain_hashes(10, T0, entries, "0" * 64) == expected


@settings(max_examples=300, deadline=None)
@given(doc=json_documents)
def test_json_checks_copy_what_a_round_trip_gives(doc: Any) -> None:
    import json

    from registry.store._internal.checks import json_value

    assert json_value("d", {"k": doc}) == json.loads(json.dumps({"k": doc}))


@pytest.mark.parametrize("doc", [{"a": "x\x00"}, {"a": {"b": "\x00"}}, {"a": ["\x00"]},
                                 {"\x00": 1}, {1: "a"}, {"a": float("nan")}, {"a": object()}])
def test_json_checks_refuse_what_is_not_storable(doc: Any) -> None:
    from registry.store._internal.checks import json_value
    from registry.store.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        json_value("d", doc)


def test_remembered_times_are_those_of_the_same_instant() -> None:
    form = driver_form("sqlite")
    utc = datetime(2032, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    east = utc.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert form.time(east) == form.time(utc) == "2032-01-02 03:04:05.000006"
    assert form.time(utc + timedelta(microseconds=1)) == "2032-01-02 03:04:05.000007"
