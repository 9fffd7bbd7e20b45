"""Registry store: every repository, units of work, errors — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from _store_support import make_store, store_pg_database, store_sqlite_template  # noqa: F401
from sqlalchemy import exc as sa_exc
from sqlalchemy import select, text

from mesh.keys import IdentityKey
from registry.store import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SchemaNotReady,
    Store,
    StoreError,
    StoreOptions,
    StoreUnavailable,
    hash_token,
    open_store,
)
from registry.store.schema import JoinToken

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


class Clock:
    """A settable clock for expiry tests."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, **delta: float) -> None:
        with self._lock:
            self.now = self.now + timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Store]:
    s = make_store(request, tmp_path, clock)
    yield s
    s.close()


def _agent(tx, n: int = 1, **kw):  # type: ignore[no-untyped-def]
    return tx.agents.create(
        did=f"did:mesh:agent{n}", name=f"agent-{n}", spiffe_id=f"spiffe://td/agent/a{n}", **kw
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- agents --------------------------------------------------------------------


def test_agent_create_get_and_timestamps_are_utc(store: Store, clock: Clock) -> None:
    with store.transaction() as tx:
        created = _agent(tx, metadata={"team": "search", "n": [1, 2]})
    got = store.get_agent("did:mesh:agent1")
    assert got == created
    assert got.status == "active" and got.granted_ring == 2
    assert got.metadata == {"team": "search", "n": [1, 2]}
    assert got.created_at == T0 and got.created_at.tzinfo == UTC
    assert store.find_agent("did:mesh:nobody") is None
    with pytest.raises(NotFound, match="did:mesh:nobody"):
        store.get_agent("did:mesh:nobody")
    with store.read() as view:
        assert view.agents.find_by_spiffe_id("spiffe://td/agent/a1") == created
        assert view.agents.count() == 1


def test_duplicate_did_and_spiffe_id_are_already_exists(store: Store) -> None:
    with store.transaction() as tx:
        _agent(tx)
    with pytest.raises(AlreadyExists, match="DID"), store.transaction() as tx:
        tx.agents.create(did="did:mesh:agent1", name="o", spiffe_id="spiffe://td/agent/other")
    with pytest.raises(AlreadyExists, match="SPIFFE ID"), store.transaction() as tx:
        tx.agents.create(did="did:mesh:other", name="o", spiffe_id="spiffe://td/agent/a1")


def test_agent_lifecycle_revoke_terminate(store: Store, clock: Clock) -> None:
    with store.transaction() as tx:
        _agent(tx)
    clock.advance(seconds=10)
    with store.transaction() as tx:
        revoked = tx.agents.revoke("did:mesh:agent1", "key leaked")
    assert revoked.status == "revoked" and revoked.revoke_reason == "key leaked"
    assert revoked.revoked_at == T0 + timedelta(seconds=10) == revoked.updated_at
    with pytest.raises(FailedPrecondition, match="is revoked"), store.transaction() as tx:
        tx.agents.revoke("did:mesh:agent1", "again")
    clock.advance(seconds=10)
    with store.transaction() as tx:
        done = tx.agents.terminate("did:mesh:agent1", "kill switch")
    assert done.status == "terminated" and done.revoke_reason == "kill switch"
    assert done.revoked_at == revoked.revoked_at  # first revocation time kept
    with pytest.raises(FailedPrecondition, match="terminated"), store.transaction() as tx:
        tx.agents.terminate("did:mesh:agent1", "again")
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.agents.revoke("did:mesh:ghost", "x")


def test_agent_ring_and_metadata_updates(store: Store) -> None:
    with store.transaction() as tx:
        _agent(tx)
        assert tx.agents.set_granted_ring("did:mesh:agent1", 3).granted_ring == 3
        assert tx.agents.set_metadata("did:mesh:agent1", {"k": "v"}).metadata == {"k": "v"}
    assert store.get_agent("did:mesh:agent1").granted_ring == 3
    for bad in (-1, 4, True):
        with pytest.raises(InvalidArgument, match="ring"), store.transaction() as tx:
            tx.agents.set_granted_ring("did:mesh:agent1", bad)  # type: ignore[arg-type]
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.agents.set_granted_ring("did:mesh:ghost", 1)
    with pytest.raises(InvalidArgument, match="ring"), store.transaction() as tx:
        _agent(tx, 2, granted_ring=7)


def test_list_agents_keyset_pages_and_status_filter(store: Store, clock: Clock) -> None:
    # Three share one timestamp (same transaction): the DID breaks the tie.
    with store.transaction() as tx:
        for n in (5, 3, 4):
            _agent(tx, n)
    for n in (1, 2, 6, 7):
        clock.advance(seconds=1)
        with store.transaction() as tx:
            _agent(tx, n)
    with store.transaction() as tx:
        tx.agents.revoke("did:mesh:agent4", "r")
        tx.agents.revoke("did:mesh:agent6", "r")

    expected = [f"did:mesh:agent{n}" for n in (3, 4, 5, 1, 2, 6, 7)]
    seen, token, pages = [], None, 0
    while True:
        page = store.list_agents(page_size=3, page_token=token)
        seen += [a.did for a in page.items]
        pages += 1
        token = page.next_page_token
        if token is None:
            break
    assert seen == expected and pages == 3

    revoked = store.list_agents(status="revoked", page_size=1)
    assert [a.did for a in revoked.items] == ["did:mesh:agent4"]
    rest = store.list_agents(status="revoked", page_size=1, page_token=revoked.next_page_token)
    assert [a.did for a in rest.items] == ["did:mesh:agent6"]
    assert rest.next_page_token is None
    with store.read() as view:
        assert view.agents.count(status="active") == 5

    for bad_token in ("nope", "eyJ0IjoxfQ", ""):
        if bad_token:
            with pytest.raises(InvalidArgument, match="page token"):
                store.list_agents(page_token=bad_token)
    with pytest.raises(InvalidArgument, match="page_size"):
        store.list_agents(page_size=0)
    with pytest.raises(InvalidArgument, match="status"):
        store.list_agents(status="zombie")


# -- keys and key history ----------------------------------------------------------


def test_keys_add_rotate_compromise(store: Store, clock: Clock) -> None:
    k0, k1 = IdentityKey.generate(), IdentityKey.generate()
    with store.transaction() as tx:
        _agent(tx)
        first = tx.keys.add(did="did:mesh:agent1", index=0, kid=k0.kid, public_key=k0.public_key)
    assert first.valid_from == T0 and first.rotated_at is None
    clock.advance(minutes=1)
    with store.transaction() as tx:
        tx.keys.add(did="did:mesh:agent1", index=1, kid=k1.kid, public_key=k1.public_key)
        rotated = tx.keys.mark_rotated(k0.kid)
    assert rotated.rotated_at == T0 + timedelta(minutes=1)
    with store.read() as view:
        assert [k.kid for k in view.keys.list_for_agent("did:mesh:agent1")] == [k0.kid, k1.kid]
        assert view.keys.current("did:mesh:agent1").kid == k1.kid  # type: ignore[union-attr]
        assert view.keys.get_by_kid(k1.kid).public_key == k1.public_key
        assert view.keys.find_by_kid("nope") is None
        assert view.keys.current("did:mesh:ghost") is None
    with pytest.raises(FailedPrecondition, match="already"), store.transaction() as tx:
        tx.keys.mark_rotated(k0.kid)
    early = T0 + timedelta(seconds=30)
    with store.transaction() as tx:
        assert tx.keys.mark_compromised(k1.kid, early).compromised_at == early
        # A later report does not move the compromise time.
        assert tx.keys.mark_compromised(k1.kid).compromised_at == early
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.keys.mark_compromised("nope")


def test_keys_reject_duplicates_unknown_agents_and_bad_keys(store: Store) -> None:
    k0, k1 = IdentityKey.generate(), IdentityKey.generate()
    with store.transaction() as tx:
        _agent(tx)
        tx.keys.add(did="did:mesh:agent1", index=0, kid=k0.kid, public_key=k0.public_key)
    with pytest.raises(AlreadyExists, match="kid"), store.transaction() as tx:
        _agent(tx, 2)
        tx.keys.add(did="did:mesh:agent2", index=0, kid=k0.kid, public_key=k0.public_key)
    with pytest.raises(AlreadyExists, match="index"), store.transaction() as tx:
        tx.keys.add(did="did:mesh:agent1", index=0, kid=k1.kid, public_key=k1.public_key)
    with pytest.raises(FailedPrecondition, match="agent"), store.transaction() as tx:
        tx.keys.add(did="did:mesh:ghost", index=0, kid=k1.kid, public_key=k1.public_key)
    for bad in (b"\x01" * 31, bytes(32)):
        with pytest.raises(InvalidArgument, match="public_key"), store.transaction() as tx:
            tx.keys.add(did="did:mesh:agent1", index=5, kid="k", public_key=bad)
    # Nothing of the failed transactions is left behind.
    assert store.find_agent("did:mesh:agent2") is None


def test_key_history_is_stored_verbatim_and_replaced(store: Store) -> None:
    doc = '{ "version":1,  "entries": [ {"z":1, "a":2} ] }'
    with store.transaction() as tx:
        _agent(tx)
        tx.keys.put_history("did:mesh:agent1", doc)
    with store.read() as view:
        assert view.keys.history("did:mesh:agent1") == doc
        assert view.keys.history("did:mesh:ghost") is None
    with store.transaction() as tx:
        tx.keys.put_history("did:mesh:agent1", '{"version":2}')
    with store.read() as view:
        assert view.keys.history("did:mesh:agent1") == '{"version":2}'
    for bad in ("not json", "[1,2]"):
        with pytest.raises(InvalidArgument, match="history_json"), store.transaction() as tx:
            tx.keys.put_history("did:mesh:agent1", bad)
    with pytest.raises(FailedPrecondition), store.transaction() as tx:
        tx.keys.put_history("did:mesh:ghost", "{}")


# -- join tokens -------------------------------------------------------------------


def test_join_token_is_used_once_and_only_its_hash_is_stored(store: Store, clock: Clock) -> None:
    secret = "jt_" + "s3cr3t" * 6
    with store.transaction() as tx:
        token = tx.tokens.create(
            token_hash=hash_token(secret),
            agent_name="billing-bot",
            created_by="operator:alice",
            expires_at=T0 + timedelta(minutes=10),
        )
    assert token.used_at is None and token.agent_name == "billing-bot"
    with store.engine.connect() as conn:
        row = conn.execute(select(JoinToken.__table__)).one()
    assert secret not in [str(v) for v in row] and row.token_hash == hash_token(secret)

    with store.transaction() as tx:
        used = tx.tokens.consume(hash_token(secret), used_by_did="did:mesh:agent1")
    assert used.used_at == T0 and used.used_by_did == "did:mesh:agent1"
    with pytest.raises(FailedPrecondition, match="already used"), store.transaction() as tx:
        tx.tokens.consume(hash_token(secret), used_by_did="did:mesh:agent2")
    with pytest.raises(NotFound, match="unknown join token"), store.transaction() as tx:
        tx.tokens.consume(hash_token("other"), used_by_did="did:mesh:agent2")
    with store.read() as view:
        assert view.tokens.find_by_hash(hash_token(secret)).used_by_did == "did:mesh:agent1"  # type: ignore[union-attr]
        assert view.tokens.get(token.id) == used
    with pytest.raises(FailedPrecondition, match="already used"), store.transaction() as tx:
        tx.tokens.revoke(token.id)


def test_join_token_expiry_revocation_and_listing(store: Store, clock: Clock) -> None:
    with store.transaction() as tx:
        short = tx.tokens.create(
            token_hash=hash_token("a"),
            agent_name="a",
            created_by="op",
            expires_at=T0 + timedelta(seconds=60),
        )
        long = tx.tokens.create(
            token_hash=hash_token("b"),
            agent_name="b",
            created_by="op",
            expires_at=T0 + timedelta(hours=1),
            token_id="tok-b",
        )
    assert long.id == "tok-b"
    clock.advance(seconds=61)
    with pytest.raises(FailedPrecondition, match="expired"), store.transaction() as tx:
        tx.tokens.consume(hash_token("a"), used_by_did="did:mesh:x")
    with store.transaction() as tx:
        assert tx.tokens.revoke("tok-b").revoked_at == T0 + timedelta(seconds=61)
    with pytest.raises(FailedPrecondition, match="revoked"), store.transaction() as tx:
        tx.tokens.consume(hash_token("b"), used_by_did="did:mesh:x")
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.tokens.revoke("nope")
    with store.read() as view:
        assert {t.id for t in view.tokens.list()} == {short.id, "tok-b"}
        assert view.tokens.list(usable_only=True) == []
    with pytest.raises(InvalidArgument, match="future"), store.transaction() as tx:
        tx.tokens.create(token_hash=hash_token("c"), agent_name="c", created_by="op", expires_at=T0)
    with pytest.raises(InvalidArgument, match="hex"), store.transaction() as tx:
        tx.tokens.create(
            token_hash="not-a-hash",
            agent_name="c",
            created_by="op",
            expires_at=T0 + timedelta(days=1),
        )
    with pytest.raises(AlreadyExists, match="secret"), store.transaction() as tx:
        tx.tokens.create(
            token_hash=hash_token("b"),
            agent_name="c",
            created_by="op",
            expires_at=T0 + timedelta(days=1),
        )


# -- challenges ---------------------------------------------------------------------


def test_challenge_is_one_time_and_bound(store: Store, clock: Clock) -> None:
    with store.transaction() as tx:
        for nonce in ("n1", "n2", "n3"):
            tx.challenges.create(
                nonce=nonce,
                purpose="register",
                trust_domain="example.org",
                expires_at=T0 + timedelta(minutes=5),
            )
    with store.transaction() as tx:
        used = tx.challenges.consume("n1", purpose="register", trust_domain="example.org")
    assert used.used_at == T0
    with pytest.raises(FailedPrecondition, match="already used"), store.transaction() as tx:
        tx.challenges.consume("n1", purpose="register", trust_domain="example.org")
    with pytest.raises(FailedPrecondition, match="issued for"), store.transaction() as tx:
        tx.challenges.consume("n2", purpose="rotate", trust_domain="example.org")
    with pytest.raises(FailedPrecondition, match="issued for"), store.transaction() as tx:
        tx.challenges.consume("n2", purpose="register", trust_domain="evil.org")
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.challenges.consume("nx", purpose="register", trust_domain="example.org")
    clock.advance(minutes=6)
    with pytest.raises(FailedPrecondition, match="expired"), store.transaction() as tx:
        tx.challenges.consume("n2", purpose="register", trust_domain="example.org")
    with store.transaction() as tx:
        assert tx.challenges.purge_expired() == 3
        assert tx.challenges.find("n3") is None
    with pytest.raises(AlreadyExists, match="nonce"), store.transaction() as tx:
        for _ in range(2):
            tx.challenges.create(
                nonce="dup",
                purpose="register",
                trust_domain="example.org",
                expires_at=clock() + timedelta(minutes=5),
            )


# -- SVIDs and principals ------------------------------------------------------------


def test_svids_record_and_list(store: Store, clock: Clock) -> None:
    with store.transaction() as tx:
        _agent(tx)
        tx.svids.record(
            serial="0a1b",
            did="did:mesh:agent1",
            kind="x509",
            not_before=T0,
            not_after=T0 + timedelta(hours=1),
        )
    clock.advance(minutes=30)
    with store.transaction() as tx:
        tx.svids.record(
            serial="jwt-1",
            did="did:mesh:agent1",
            kind="jwt",
            not_before=clock(),
            not_after=clock() + timedelta(minutes=5),
        )
    with store.read() as view:
        assert [s.serial for s in view.svids.list_for_agent("did:mesh:agent1")] == ["jwt-1", "0a1b"]
        assert view.svids.get("0a1b").kind == "x509"
        assert view.svids.find("nope") is None
        assert view.svids.count_issued_since("did:mesh:agent1", T0) == 2
        assert view.svids.count_issued_since("did:mesh:agent1", T0, kind="jwt") == 1
        with pytest.raises(NotFound):
            view.svids.get("nope")
    with pytest.raises(AlreadyExists, match="serial"), store.transaction() as tx:
        tx.svids.record(
            serial="0a1b", did="did:mesh:agent1", kind="x509", not_before=T0, not_after=clock()
        )
    with pytest.raises(InvalidArgument, match="kind"), store.transaction() as tx:
        tx.svids.record(
            serial="z", did="did:mesh:agent1", kind="pem", not_before=T0, not_after=clock()
        )
    with pytest.raises(FailedPrecondition), store.transaction() as tx:
        tx.svids.record(
            serial="z", did="did:mesh:ghost", kind="jwt", not_before=T0, not_after=clock()
        )


def test_principals(store: Store) -> None:
    with store.transaction() as tx:
        alice = tx.principals.create(
            kind="operator", name="alice", roles=["admin", "admin", "auditor"], credential_hash="h1"
        )
        tx.principals.create(kind="reporter", name="sre", roles=[], credential_hash="h2")
    assert alice.roles == ("admin", "auditor")
    with store.read() as view:
        assert view.principals.get(alice.id) == alice
        assert view.principals.find_by_credential("h1") == alice
        assert view.principals.get_by_name("operator", "alice") == alice
        assert [p.name for p in view.principals.list()] == ["alice", "sre"]
        assert [p.name for p in view.principals.list(kind="reporter")] == ["sre"]
        with pytest.raises(NotFound):
            view.principals.get_by_name("operator", "bob")
    with store.transaction() as tx:
        assert tx.principals.set_roles(alice.id, ["viewer"]).roles == ("viewer",)
        assert tx.principals.revoke(alice.id).revoked_at == T0
    with store.read() as view:
        assert [p.name for p in view.principals.list()] == ["sre"]
        assert len(view.principals.list(include_revoked=True)) == 2
    with pytest.raises(FailedPrecondition), store.transaction() as tx:
        tx.principals.revoke(alice.id)
    with pytest.raises(AlreadyExists, match="name"), store.transaction() as tx:
        tx.principals.create(kind="operator", name="alice", roles=[], credential_hash="h3")
    with pytest.raises(AlreadyExists, match="credential"), store.transaction() as tx:
        tx.principals.create(kind="operator", name="carol", roles=[], credential_hash="h1")
    with pytest.raises(InvalidArgument, match="kind"), store.transaction() as tx:
        tx.principals.create(kind="root", name="x", roles=[], credential_hash="h4")
    with pytest.raises(InvalidArgument, match="roles"), store.transaction() as tx:
        tx.principals.create(kind="operator", name="x", roles="admin", credential_hash="h4")


# -- events and units of work ----------------------------------------------------------


def test_events_append_and_read(store: Store) -> None:
    seen: list[int] = []
    remove = store.add_commit_listener(seen.append)
    with store.transaction() as tx:
        _agent(tx)
        assert tx.events.append("agent.registered", "did:mesh:agent1", {"ring": 2}) == 1
        assert tx.events.append("bundle.changed", None, None) == 2
    with store.transaction() as tx:
        assert tx.events.append("agent.revoked", "did:mesh:agent1", {"why": "x"}) == 3
    assert seen == [2, 3]
    remove()
    with store.transaction() as tx:
        tx.events.append("bundle.changed", None, {})
    assert seen == [2, 3]

    assert store.latest_event_seq() == 4
    events = store.events_since(1, limit=2)
    assert [(e.seq, e.type, e.agent_did) for e in events] == [
        (2, "bundle.changed", None),
        (3, "agent.revoked", "did:mesh:agent1"),
    ]
    assert events[1].payload == {"why": "x"} and events[1].created_at == T0
    with store.read() as view:
        # An agent's events, and the registry-wide ones (no agent) that concern everyone.
        assert [e.seq for e in view.events.since(0, agent_did="did:mesh:agent1")] == [1, 2, 3, 4]
        assert [e.seq for e in view.events.since(0, agent_did="did:mesh:other")] == [2, 4]
    assert store.events_since(4) == []
    with pytest.raises(InvalidArgument):
        store.events_since(-1)
    with pytest.raises(InvalidArgument, match="payload"), store.transaction() as tx:
        tx.events.append("x", None, {"bad": float("nan")})


def test_rollback_leaves_nothing_and_no_sequence_gap(store: Store) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.transaction() as tx:
        _agent(tx)
        tx.events.append("agent.registered", "did:mesh:agent1", {})
        tx.audit.append("op", "agent.register", "did:mesh:agent1", {})
        raise Boom
    # A failing statement mid-way rolls back the earlier ones too.
    with pytest.raises(AlreadyExists), store.transaction() as tx:
        _agent(tx, 2)
        tx.events.append("agent.registered", "did:mesh:agent2", {})
        tx.audit.append("op", "agent.register", "did:mesh:agent2", {})
        _agent(tx, 2)
    assert store.list_agents().items == []
    assert store.latest_event_seq() == 0 and store.events_since(0) == []
    assert store.audit_rows() == []
    with store.transaction() as tx:
        _agent(tx, 3)
        assert tx.events.append("agent.registered", "did:mesh:agent3", {}) == 1
        tx.audit.append("op", "agent.register", "did:mesh:agent3")
    assert [r.seq for r in store.audit_rows()] == [1]


def test_repositories_refuse_use_after_the_block(store: Store) -> None:
    with store.transaction() as tx:
        pass
    with pytest.raises(StoreError, match="finished"):
        tx.agents.find("did:mesh:agent1")


def test_both_back_ends_refuse_the_same_bad_values(store: Store) -> None:
    cases = [
        dict(did="did:mesh:x", name="a" * 256, spiffe_id="spiffe://td/agent/x"),
        dict(did="did:mesh:x", name="nul\x00", spiffe_id="spiffe://td/agent/x"),
        dict(did="", name="a", spiffe_id="spiffe://td/agent/x"),
        dict(did="did:mesh:x", name="a", spiffe_id="spiffe://td/agent/x", metadata={1: "x"}),
        dict(did="did:mesh:x", name="a", spiffe_id="spiffe://td/agent/x", metadata={"k": b"x"}),
    ]
    for kwargs in cases:
        with pytest.raises(InvalidArgument), store.transaction() as tx:
            tx.agents.create(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="time zone"), store.transaction() as tx:
        tx.challenges.create(
            nonce="n", purpose="p", trust_domain="t", expires_at=datetime(2030, 1, 1)
        )


# -- opening, configuration and failures --------------------------------------------------


def test_sqlite_pragmas_follow_the_options(tmp_path: Path) -> None:
    for mode, code in (("NORMAL", 1), ("FULL", 2)):
        s = open_store(None, tmp_path / mode, options=StoreOptions(sqlite_synchronous=mode))
        try:
            with s.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == code
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        finally:
            s.close()
        assert (tmp_path / mode / "registry.db").exists()


def test_bad_urls_and_options_are_invalid_argument(tmp_path: Path) -> None:
    bad = [
        "mysql://u@h/db",
        "sqlite://",
        "sqlite:///:memory:",
        "::not a url::",
        "postgresql+asyncpg://h/d",
    ]
    for url in bad:
        with pytest.raises(InvalidArgument):
            open_store(url, tmp_path)
    with pytest.raises(InvalidArgument, match="synchronous"):
        open_store(None, tmp_path, options=StoreOptions(sqlite_synchronous="SOMETIMES"))


def test_postgres_down_is_store_unavailable(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://postgres:hunter2@127.0.0.1:{_closed_port()}/mesh"
    s = open_store(url, tmp_path, options=StoreOptions(connect_timeout_seconds=2))
    assert "hunter2" not in s.url
    try:
        calls = [
            s.upgrade,
            s.ping,
            lambda: s.get_agent("did:mesh:x"),
            lambda: s.transaction().__enter__(),
        ]
        for call in calls:
            with pytest.raises(StoreUnavailable, match="cannot be reached") as info:
                call()
            assert isinstance(info.value.__cause__, sa_exc.OperationalError)
            assert "hunter2" not in str(info.value)
    finally:
        s.close()


def test_unwritable_data_dir_is_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreUnavailable, match="data directory"):
        open_store(None, blocker / "data")


def test_unmigrated_database_is_schema_not_ready(tmp_path: Path) -> None:
    s = open_store(None, tmp_path)
    try:
        with pytest.raises(SchemaNotReady, match="mesh db upgrade"):
            s.check_schema()
        with pytest.raises(SchemaNotReady, match="mesh db upgrade"):
            s.get_agent("did:mesh:x")
        assert issubclass(SchemaNotReady, StoreUnavailable)
        s.upgrade()
        s.check_schema()
    finally:
        s.close()


def test_direct_sql_matches_the_api_view(store: Store) -> None:
    # The API's JSON and timestamps are what a plain SQL client sees too.
    with store.transaction() as tx:
        _agent(tx, metadata={"a": 1})
    with store.engine.connect() as conn:
        raw = conn.execute(text("SELECT metadata FROM agents")).scalar()
    assert (json.loads(raw) if isinstance(raw, str) else raw) == {"a": 1}


def test_postgres_connections_dropped_by_the_server_are_replaced(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """pool_pre_ping: after the server ends every session (restart, failover,
    idle timeout), the next call still succeeds on a fresh connection."""
    import psycopg

    url = request.getfixturevalue("postgres_url")
    s = open_store(url, tmp_path)
    try:
        s.upgrade()
        with s.transaction() as tx:
            _agent(tx)
        name = url.rsplit("/", 1)[1]
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
            killed = c.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            ).fetchone()
        assert killed is not None and killed[0] >= 1
        assert s.get_agent("did:mesh:agent1").did == "did:mesh:agent1"
        with s.transaction() as tx:
            _agent(tx, 2)
    finally:
        s.close()


def test_postgres_lock_wait_is_bounded(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """A transaction stuck holding the event counter makes other event writers
    fail with StoreUnavailable after lock_timeout, instead of hanging."""
    url = request.getfixturevalue("postgres_url")
    s = open_store(url, tmp_path, options=StoreOptions(pg_lock_timeout_seconds=0.5))
    try:
        s.upgrade()
        holding, release = threading.Event(), threading.Event()

        def stuck() -> None:
            with s.transaction() as tx:
                tx.events.append("x", None, {})
                holding.set()
                release.wait(30)

        t = threading.Thread(target=stuck)
        t.start()
        assert holding.wait(30)
        try:
            with pytest.raises(StoreUnavailable, match="row lock"), s.transaction() as tx:
                tx.events.append("y", None, {})
        finally:
            release.set()
            t.join()
        assert [e.type for e in s.events_since(0)] == ["x"]
    finally:
        s.close()


def test_nested_transactions_are_refused_not_deadlocked(store: Store) -> None:
    with store.transaction() as tx:
        _agent(tx)
        with pytest.raises(StoreError, match="already open"), store.transaction():
            pass
        # Reading meanwhile is fine (it does not see the uncommitted agent).
        assert store.find_agent("did:mesh:agent1") is None
    assert store.find_agent("did:mesh:agent1") is not None
    with store.transaction() as tx:  # the flag was cleared
        _agent(tx, 2)
