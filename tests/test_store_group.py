"""Group commit (``Store.submit``, ``Store.submit_batched``) and rows appended at
commit time, on SQLite and PostgreSQL: calls that arrive together share one
transaction, yet each commits or rolls back on its own, with its events and
audit entries; sequences stay gap-free and the audit chain verifies."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from registry.store import (
    AlreadyExists,
    Batch,
    FailedPrecondition,
    NotFound,
    Refused,
    Store,
    StoreError,
    hash_token,
    verify_audit_chain,
)


def _held(store: Store) -> tuple[threading.Event, Future[Any]]:
    """Occupy the writer thread until the returned event is set, so that the
    calls submitted meanwhile form the next group, together."""
    started, release = threading.Event(), threading.Event()

    def hold(tx: Any) -> str:
        started.set()
        assert release.wait(30)
        return "held"

    future = store.submit(hold)
    assert started.wait(30)
    return release, future


def _agent(tx: Any, i: int) -> str:
    did = f"did:mesh:g{i}"
    tx.agents.create(did=did, name=f"agent-{i}", spiffe_id=f"spiffe://td/agent/g{i}")
    tx.events.append_at_commit("agent.registered", did, {"i": i})
    tx.audit.append("tests", "agent.register", did, {"i": i})
    return did


def _gap_free(store: Store) -> None:
    events = store.events_since(0, limit=10_000)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert store.latest_event_seq() == len(events)
    assert verify_audit_chain(store).ok


def test_calls_submitted_together_share_one_transaction(store: Store) -> None:
    release, held = _held(store)
    futures = [store.submit(lambda tx, i=i: _agent(tx, i)) for i in range(20)]
    groups_before = store.group_stats.groups
    release.set()
    assert held.result(30) == "held"
    assert [f.result(30) for f in futures] == [f"did:mesh:g{i}" for i in range(20)]
    # The twenty calls queued behind the held one were applied as one group.
    assert store.group_stats.groups == groups_before + 1
    assert store.group_stats.largest >= 20
    assert store.list_agents(page_size=100).items.__len__() == 20
    events = store.events_since(0)
    assert [(e.seq, e.agent_did) for e in events] == [
        (i + 1, f"did:mesh:g{i}") for i in range(20)
    ]
    # One transaction: one timestamp for every row of the group.
    assert len({e.created_at for e in events}) == 1
    _gap_free(store)


def test_a_failing_call_rolls_back_alone_with_its_own_error(store: Store) -> None:
    def fails_after_writing(tx: Any) -> None:
        _agent(tx, 99)
        tx.events.append("agent.extra", "did:mesh:g99", {})  # an immediate append too
        raise FailedPrecondition("this one changes its mind")

    def duplicate(tx: Any) -> None:
        _agent(tx, 1)  # did:mesh:g1 is created by an earlier call of the same group

    release, held = _held(store)
    futures = [
        store.submit(lambda tx: _agent(tx, 0)),
        store.submit(fails_after_writing),
        store.submit(lambda tx: _agent(tx, 1)),
        store.submit(duplicate),
        store.submit(lambda tx: _agent(tx, 2)),
    ]
    release.set()
    held.result(30)
    assert futures[0].result(30) == "did:mesh:g0"
    with pytest.raises(FailedPrecondition, match="changes its mind"):
        futures[1].result(30)
    assert futures[2].result(30) == "did:mesh:g1"
    with pytest.raises(AlreadyExists):
        futures[3].result(30)
    assert futures[4].result(30) == "did:mesh:g2"

    assert store.find_agent("did:mesh:g99") is None
    dids = [e.agent_did for e in store.events_since(0)]
    assert dids == ["did:mesh:g0", "did:mesh:g1", "did:mesh:g2"]
    subjects = [row.subject for row in store.audit_rows()]
    assert subjects == ["did:mesh:g0", "did:mesh:g1", "did:mesh:g2"]
    _gap_free(store)


class _Boom(BaseException):
    """Not an Exception: it escapes the call's savepoint and fails the whole group."""


def test_a_group_that_fails_as_a_whole_leaves_nothing(store: Store) -> None:
    def explode(tx: Any) -> None:
        raise _Boom()

    release, held = _held(store)
    futures = [store.submit(lambda tx, i=i: _agent(tx, i)) for i in range(3)]
    futures.append(store.submit(explode))
    release.set()
    held.result(30)
    for future in futures:
        with pytest.raises(_Boom):
            future.result(30)
    assert store.list_agents().items == []
    assert store.events_since(0) == []
    assert store.group_stats.failed_groups == 1
    # The writer carries on with the next group.
    assert store.write(lambda tx: _agent(tx, 7)) == "did:mesh:g7"
    assert [e.seq for e in store.events_since(0)] == [1]
    _gap_free(store)


def test_concurrent_writers_through_groups_keep_sequences_gap_free(store: Store) -> None:
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for i in range(15):
                n = w * 100 + i
                if i % 5 == 4:
                    with pytest.raises(AlreadyExists):
                        store.write(lambda tx, n=n: _agent(tx, n - 1))
                else:
                    store.write(lambda tx, n=n: _agent(tx, n))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert len(store.events_since(0, limit=1000)) == 8 * 12
    _gap_free(store)


def test_rows_appended_at_commit_follow_the_immediate_ones(store: Store) -> None:
    with store.transaction() as tx:
        tx.events.append_at_commit("late", None, {"n": 1})
        first = tx.events.append("early", None, {"n": 2})
        tx.audit.append("tests", "first", "x", {})
        tx.audit.append("tests", "second", "y", {})
        assert first == 1
        # Audit entries are all appended at commit, in call order.
        assert store.audit_rows() == []
    assert [(e.seq, e.type) for e in store.events_since(0)] == [(1, "early"), (2, "late")]
    assert [(r.seq, r.action) for r in store.audit_rows()] == [(1, "first"), (2, "second")]
    _gap_free(store)


def test_rows_queued_for_commit_vanish_with_a_rollback(store: Store) -> None:
    with pytest.raises(FailedPrecondition), store.transaction() as tx:
        tx.events.append_at_commit("never", None, {})
        tx.audit.append("tests", "never", "x", {})
        raise FailedPrecondition("no")
    assert store.events_since(0) == [] and store.audit_rows() == []
    with store.transaction() as tx:
        tx.events.append_at_commit("kept", None, {})
        tx.audit.append("tests", "kept", "x", {})
    assert [e.seq for e in store.events_since(0)] == [1]
    assert [r.seq for r in store.audit_rows()] == [1]
    _gap_free(store)


def test_appending_at_commit_checks_the_arguments_at_once(store: Store) -> None:
    with pytest.raises(StoreError), store.transaction() as tx:
        tx.events.append_at_commit("x" * 65, None, {})
    with pytest.raises(StoreError), store.transaction() as tx:
        tx.audit.append("tests", "a", "s", {"bad": float("nan")})
    assert store.events_since(0) == []


def test_write_refuses_to_nest_in_a_transaction(store: Store) -> None:
    with store.transaction(), pytest.raises(StoreError, match="already open"):
        store.write(lambda tx: None)

    def nested(tx: Any) -> None:
        with store.transaction():
            pass

    with pytest.raises(StoreError, match="already open"):
        store.write(nested)


def test_a_closed_store_takes_no_more_calls(store: Store) -> None:
    assert store.write(lambda tx: _agent(tx, 1)) == "did:mesh:g1"
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.submit(lambda tx: None)


# -- batches ---------------------------------------------------------------------------


class _Agents(Batch[int, str]):
    """Creates agent g<n> for item n; set-based unless told to refuse some."""

    def __init__(
        self, refuse: Sequence[int] = (), explode: bool = False, unprepared: Sequence[int] = ()
    ) -> None:
        self.refuse = set(refuse)
        self.explode = explode
        self.unprepared = set(unprepared)
        self.rounds: list[list[int]] = []
        self.prepared_on: set[str] = set()

    def prepare(self, item: int) -> int:
        self.prepared_on.add(threading.current_thread().name)
        if item in self.unprepared:
            raise FailedPrecondition(f"item {item} cannot be prepared")
        return item

    def apply_all(self, tx: Any, items: Sequence[int]) -> list[str]:
        self.rounds.append(list(items))
        created = tx.agents.create_many(
            [(f"did:mesh:g{n}", f"agent-{n}", f"spiffe://td/agent/g{n}", None) for n in items]
        )
        if self.explode:
            raise RuntimeError("set-based path broke")
        refused = [i for i, n in enumerate(items) if n in self.refuse]
        refused += [i for i, n in enumerate(items) if f"did:mesh:g{n}" not in created]
        if refused:
            raise Refused(refused)
        for n in items:
            tx.events.append_at_commit("agent.registered", f"did:mesh:g{n}", {"n": n})
        return [f"did:mesh:g{n}" for n in items]

    def apply_one(self, tx: Any, item: int) -> str:
        if item < 0:
            raise NotFound(f"item {item} is refused for good")
        return _agent(tx, item)


def test_a_batch_is_written_set_based(store: Store) -> None:
    batch = _Agents()
    release, held = _held(store)
    futures = [store.submit_batched(batch, n) for n in range(10)]
    release.set()
    held.result(30)
    assert [f.result(30) for f in futures] == [f"did:mesh:g{n}" for n in range(10)]
    assert batch.rounds == [list(range(10))]
    assert store.group_stats.batched == 10
    _gap_free(store)


def test_a_failed_preparation_fails_its_item_alone(store: Store) -> None:
    batch = _Agents(unprepared=[2])
    release, held = _held(store)
    futures = [store.submit_batched(batch, n) for n in range(4)]
    release.set()
    held.result(30)
    with pytest.raises(FailedPrecondition, match="item 2 cannot be prepared"):
        futures[2].result(30)
    assert [futures[n].result(30) for n in (0, 1, 3)] == [f"did:mesh:g{n}" for n in (0, 1, 3)]
    assert batch.rounds == [[0, 1, 3]]
    assert batch.prepared_on == {"store-group-commit"}
    assert store.find_agent("did:mesh:g2") is None
    _gap_free(store)


def test_refused_items_go_one_by_one_and_get_their_own_result(store: Store) -> None:
    store.write(lambda tx: _agent(tx, 3))  # g3 exists: create_many skips it
    batch = _Agents(refuse=[5, -1])
    release, held = _held(store)
    items = [1, 3, 5, -1, 7]
    futures = [store.submit_batched(batch, n) for n in items]
    release.set()
    held.result(30)
    assert futures[0].result(30) == "did:mesh:g1"
    with pytest.raises(AlreadyExists):
        futures[1].result(30)  # the one-by-one path says why
    assert futures[2].result(30) == "did:mesh:g5"  # refused by the batch, fine alone
    with pytest.raises(NotFound):
        futures[3].result(30)
    assert futures[4].result(30) == "did:mesh:g7"
    # First round refused three items and was rolled back; the second wrote two.
    assert batch.rounds == [items, [1, 7]]
    dids = sorted(a.did for a in store.list_agents().items)
    assert dids == ["did:mesh:g1", "did:mesh:g3", "did:mesh:g5", "did:mesh:g7"]
    # g3's own event, then the batch's two, then g5's: nothing of the refused round.
    assert [e.agent_did for e in store.events_since(0)] == [
        "did:mesh:g3", "did:mesh:g1", "did:mesh:g7", "did:mesh:g5",
    ]
    _gap_free(store)


def test_a_broken_batch_falls_back_to_one_by_one(store: Store) -> None:
    batch = _Agents(explode=True)
    release, held = _held(store)
    futures = [store.submit_batched(batch, n) for n in range(4)]
    release.set()
    held.result(30)
    assert [f.result(30) for f in futures] == [f"did:mesh:g{n}" for n in range(4)]
    assert len(batch.rounds) == 1
    assert store.group_stats.batched == 0
    assert len(store.list_agents().items) == 4
    _gap_free(store)


# -- the set-based repository calls ------------------------------------------------------


def _token(tx: Any, secret: str, *, ttl: float = 300) -> str:
    tx.tokens.create(
        token_hash=hash_token(secret),
        agent_name=f"name-{secret}",
        created_by="op",
        expires_at=tx.now + timedelta(seconds=ttl),
    )
    return hash_token(secret)


def test_consume_many_takes_only_usable_tokens_once(store: Store) -> None:
    with store.transaction() as tx:
        a, b, c = _token(tx, "a"), _token(tx, "b"), _token(tx, "c")
        tx.tokens.consume(c, used_by_did="did:mesh:old")
    with store.transaction() as tx:
        revoked = _token(tx, "r")
        tx.tokens.revoke(tx.tokens.find_by_hash(revoked).id)  # type: ignore[union-attr]
    unknown = hash_token("unknown")
    with store.transaction() as tx:
        taken = tx.tokens.consume_many(
            [(a, "did:mesh:1"), (b, "did:mesh:2"), (c, "did:mesh:3"), (revoked, "did:mesh:4"),
             (unknown, "did:mesh:5"), (a, "did:mesh:6")]
        )
    assert set(taken) == {a, b}
    assert (taken[a].used_by_did, taken[b].used_by_did) == ("did:mesh:1", "did:mesh:2")
    assert taken[a].agent_name == "name-a" and taken[a].used_at is not None
    with store.read() as view:
        stored = view.tokens.find_by_hash(a)
        assert stored is not None and stored.used_by_did == "did:mesh:1"
        assert view.tokens.find_by_hash(c).used_by_did == "did:mesh:old"  # type: ignore[union-attr]
    with store.transaction() as tx:
        assert tx.tokens.consume_many([(a, "did:mesh:7")]) == {}
        assert tx.tokens.consume_many([]) == {}


def test_use_many_records_first_uses_only(store: Store) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=5)
    with store.transaction() as tx:
        tx.challenges.use(nonce="n1", purpose="register", trust_domain="td", expires_at=soon)
        tx.challenges.create(nonce="n2", purpose="register", trust_domain="td", expires_at=soon)
    with store.transaction() as tx:
        recorded = tx.challenges.use_many(
            [("n1", "register", "td", soon), ("n2", "register", "td", soon),
             ("n3", "register", "td", soon), ("n3", "register", "td", soon),
             ("n4", "register", "td", datetime.now(UTC) - timedelta(seconds=1))]
        )
    assert recorded == {"n3"}
    with store.transaction() as tx:
        # The created-but-unused one is consumed by the one-by-one path; replays are refused.
        tx.challenges.use(nonce="n2", purpose="register", trust_domain="td", expires_at=soon)
        with pytest.raises(FailedPrecondition, match="already used"):
            tx.challenges.use(nonce="n3", purpose="register", trust_domain="td", expires_at=soon)
    with store.read() as view:
        assert all(view.challenges.find(n).used_at is not None for n in ("n1", "n2", "n3"))  # type: ignore[union-attr]
        assert view.challenges.find("n4") is None


def test_create_many_skips_existing_agents(store: Store) -> None:
    store.write(lambda tx: _agent(tx, 1))
    with store.transaction() as tx:
        created = tx.agents.create_many(
            [("did:mesh:g1", "x", "spiffe://td/agent/other", None),
             ("did:mesh:g2", "y", "spiffe://td/agent/g1", None),  # SPIFFE ID taken
             ("did:mesh:g3", "z", "spiffe://td/agent/g3", {"team": "a"})]
        )
    assert created == {"did:mesh:g3"}
    agent = store.get_agent("did:mesh:g3")
    assert (agent.status, agent.granted_ring, agent.metadata) == ("active", 2, {"team": "a"})
    assert store.find_agent("did:mesh:g2") is None


def test_json_values_are_plain_copies_as_a_round_trip_gives() -> None:
    import enum
    import json

    from registry.store._internal.checks import json_object

    class Colour(enum.StrEnum):
        RED = "red"

    class Level(enum.IntEnum):
        HIGH = 3

    doc = {"a": (1, 2.5, -0.0), "b": {"c": Colour.RED, "d": Level.HIGH, "e": None, "f": True},
           "g": 2**70, "h": "\u00e9"}
    copy = json_object("details", doc)
    assert copy == json.loads(json.dumps(doc).replace("-0.0", "0.0"))
    assert type(copy["b"]["c"]) is str and type(copy["b"]["d"]) is int
    assert type(copy["a"]) is list and copy["a"][2] == 0.0 and str(copy["a"][2]) == "0.0"
    copy["b"]["e"] = "changed"
    assert doc["b"]["e"] is None  # a copy, not a view
    for bad in ({"x": float("inf")}, {"x": "a\x00b"}, {1: "x"}, {"x": object()}, {"x": b"raw"}):
        with pytest.raises(StoreError):
            json_object("details", bad)
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(StoreError):
        json_object("details", {"deep": deep})
