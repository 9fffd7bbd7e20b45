"""The recompute over the real store (SQLite and PostgreSQL): only due agents, only
changes become events, hysteresis across runs, a report racing a run stays dirty,
batched events keep the sequence gap-free, pruning."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mesh.keys import IdentityKey
from registry.events import types as event_types
from registry.scoring import Recomputer, current_state
from registry.store import Store, open_store
from registry.store.repos.trust import ScoringInput, SignalRow

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
REPORTER = "spiffe://test.mesh/reporter/sre"


class Clock:
    def __init__(self) -> None:
        self.now = T0
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, **delta: float) -> None:
        with self._lock:
            self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Store]:
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    s = open_store(url, tmp_path / "data", clock=clock)
    s.upgrade()
    yield s
    s.close()


def add_agent(store: Store, n: int = 1) -> list[str]:
    dids = []
    with store.transaction() as tx:
        for i in range(n):
            key = IdentityKey.generate()
            did = str(key.did())
            tx.agents.create(did=did, name=f"t/{i}", spiffe_id=f"spiffe://test.mesh/agent/{did}")
            tx.keys.add(did=did, index=0, kid=key.kid, public_key=key.public_key,
                        valid_from=tx.now)
            tx.events.append(event_types.AGENT_REGISTERED, did,
                             {"state": dict(current_state(tx, did))})
            dids.append(did)
    return dids


def report(store: Store, did: str, report_id: str, success: float, at: datetime,
           violation: str | None = None) -> None:
    signals = [SignalRow("success_rate", at, value=success),
               SignalRow("error_budget_remaining", at, value=success)]
    if violation:
        signals.append(SignalRow("violation", at, severity=violation, reason="test"))
    with store.transaction() as tx:
        tx.trust.record_report(reporter=REPORTER, report_id=report_id, agent_did=did,
                               digest="0" * 64, signals=signals)


def events(store: Store, did: str) -> list[tuple[int, str]]:
    with store.read() as view:
        return [(e.seq, e.type) for e in view.events.since(0, limit=10_000, agent_did=did)]


def test_only_due_agents_and_only_changes(store: Store, clock: Clock) -> None:
    a, _b = add_agent(store, 2)
    r = Recomputer(store)
    first = r.run()
    assert first.examined == 2 and first.changed == 2
    assert [t for _, t in events(store, a)] == [
        "agent.registered", "trust.score_changed", "trust.tier_changed"
    ]
    assert r.run().examined == 0  # nothing new, nothing due
    report(store, a, "r1", 0.99, clock.now)
    second = r.run()
    assert second.examined == 1  # only the agent with new input
    with store.read() as view:
        state = view.trust.state(a)
        assert state is not None and not state.dirty and state.next_due_at is not None
        due = state.next_due_at
    clock.now = due + timedelta(seconds=1)
    assert r.run().examined >= 1  # time alone made it due


def test_demotion_at_once_promotion_after_hold(store: Store, clock: Clock) -> None:
    (a,) = add_agent(store)
    r = Recomputer(store)
    r.run()
    report(store, a, "bad", 0.0, clock.now, violation="critical")
    r.run()
    with store.read() as view:
        st = view.trust.state(a)
    assert st is not None and st.effective_ring == 3
    ring_events = [s for s, t in events(store, a) if t == "trust.ring_changed"]
    assert len(ring_events) == 1
    # Days later, excellent signals: the score qualifies again, but the promotion holds.
    clock.advance(days=60)
    report(store, a, "good", 1.0, clock.now)
    with store.transaction() as tx:
        tx.trust.record_report(reporter=REPORTER, report_id="audit", agent_did=a,
                               digest="1" * 64,
                               signals=[SignalRow("audit_log_completeness", clock.now, 1.0)])
        key = tx.keys.current(a)
        assert key is not None
    # A fresh key, so credential age does not hold the score down.
    from sqlalchemy import update

    from registry.store.schema import AgentKey
    with store.transaction() as tx:
        tx.unit.execute(update(AgentKey.__table__).values(valid_from=clock.now))
    r.run()
    with store.read() as view:
        st = view.trust.state(a)
    assert st is not None and st.score is not None and st.score >= 425
    assert st.effective_ring == 3 and st.candidate_ring is not None  # held
    clock.advance(minutes=11)
    r.run()
    with store.read() as view:
        st = view.trust.state(a)
    assert st is not None and st.effective_ring < 3 and st.candidate_ring is None
    assert len([s for s, t in events(store, a) if t == "trust.ring_changed"]) == 2


def test_report_during_a_run_keeps_the_agent_dirty(store: Store, clock: Clock) -> None:
    (a,) = add_agent(store)
    with store.read() as view:
        inputs = view.trust.inputs()
    read_at = clock.now
    clock.advance(seconds=1)
    report(store, a, "late", 0.2, clock.now)  # lands after the read
    row = {
        "did": a, "score": 500, "tier": "medium", "effective_ring": 2, "candidate_ring": None,
        "candidate_since": None, "ring_reason": "x", "breakdown": [], "next_due_at": None,
        "computed_at": read_at,
    }
    assert inputs[0].did == a
    with store.transaction() as tx:
        tx.trust.write_results([row], read_at=read_at)
    with store.read() as view:
        state = view.trust.state(a)
    assert state is not None and state.dirty and state.success_rate is not None


def test_batched_events_are_gap_free_and_ordered(store: Store) -> None:
    (a,) = add_agent(store)
    with store.transaction() as tx:
        first = tx.events.append(event_types.SCORE_CHANGED, a, {"n": 0})
        last = tx.trust.append_events(
            [(event_types.SCORE_CHANGED, a, {"n": i}) for i in range(1, 6)]
        )
        after = tx.events.append(event_types.SCORE_CHANGED, a, {"n": 6})
    assert last == first + 5 and after == last + 1
    with store.read() as view:
        rows = view.events.since(first - 1, limit=100)
    assert [r.seq for r in rows] == list(range(first, after + 1))
    assert [r.payload["n"] for r in rows] == list(range(7))


def test_prune_keeps_the_newest(store: Store, clock: Clock) -> None:
    add_agent(store, 3)
    latest = store.latest_event_seq()
    clock.advance(days=8)
    with store.transaction() as tx:
        deleted = tx.trust.prune_events(before=clock.now, keep_last=1)
    assert deleted == latest - 1
    with store.read() as view:
        assert view.trust.oldest_event_seq() == latest


def test_out_of_order_reports_keep_the_newest_observation(store: Store, clock: Clock) -> None:
    (a,) = add_agent(store)
    report(store, a, "new", 0.9, clock.now)
    report(store, a, "old", 0.1, clock.now - timedelta(hours=1))
    with store.read() as view:
        state = view.trust.state(a)
        assert state is not None and state.success_rate is not None
        assert state.success_rate[0] == 0.9
        assert view.trust.report_digest(REPORTER, "old") == "0" * 64


def test_one_recompute_at_a_time_across_replicas(
    postgres_url: str, tmp_path: Path, clock: Clock
) -> None:
    # Two replicas = two stores (two connection pools) on one PostgreSQL database.
    first = open_store(postgres_url, tmp_path / "a", clock=clock)
    second = open_store(postgres_url, tmp_path / "b", clock=clock)
    try:
        first.upgrade()
        add_agent(first)
        one, two = Recomputer(first), Recomputer(second)
        with one.lock.hold() as held:
            assert held
            assert two.run().skipped  # the other replica skips its turn
        assert two.run().examined == 1  # released: it runs
    finally:
        first.close()
        second.close()


def test_stored_results_match_the_public_api(store: Store, clock: Clock) -> None:
    """What a run stores (state, breakdown, due time, history, events) is what the public
    ``trust`` API computes from the same rows: the lean read and bulk writes lose nothing."""
    import json

    from test_trust_recompute_batch import reference

    dids = add_agent(store, 4)
    report(store, dids[0], "a", 0.97, clock.now - timedelta(hours=3))
    report(store, dids[1], "b", 0.4, clock.now - timedelta(minutes=5), violation="high")
    Recomputer(store).run(everything=True)  # a first placement for everyone
    clock.advance(hours=2)
    report(store, dids[2], "c", 0.1, clock.now, violation="critical")
    with store.read() as view:
        before = {r[0]: r for r in view.trust.scoring_inputs()}
        since = clock.now - timedelta(days=300)
        violations = view.trust.violations(since)
    latest = store.latest_event_seq()
    result = Recomputer(store).run(everything=True)
    assert result.examined == 4 and result.changed >= 1
    with store.read() as view:
        written = view.events.since(latest, limit=100)
        for did, row in before.items():
            expected, changed, events = reference(
                row, violations.get(did, []), clock.now, Recomputer(store).policy
            )
            state = view.trust.state(did)
            assert state is not None and not state.dirty
            assert state.breakdown == json.loads(expected.pop("breakdown"))
            assert {k: getattr(state, k) for k in expected} == expected
            assert state.computed_at == clock.now
            history = view.trust.history(did, limit=1)
            assert (history[0].computed_at == clock.now) is changed
            assert [(e.type, e.payload) for e in written if e.agent_did == did] == [
                (t, p) for t, _, p in events
            ]
    assert [e.seq for e in written] == list(range(latest + 1, latest + 1 + result.events))


def test_batches_written_beside_the_compute_keep_the_sequence(store: Store, clock: Clock) -> None:
    dids = add_agent(store, 7)
    latest = store.latest_event_seq()
    result = Recomputer(store, batch=2).run()  # four batches, on writer threads
    assert (result.examined, result.changed, result.events) == (7, 7, 14)
    with store.read() as view:
        written = view.events.since(latest, limit=100)
    # Gap-free in commit order; each batch's events are contiguous, so each agent's
    # two events are adjacent and in order.
    assert [e.seq for e in written] == list(range(latest + 1, latest + 15))
    assert result.last_sequence == latest + 14
    for did in dids:
        mine = [(e.seq, e.type) for e in written if e.agent_did == did]
        assert [t for _, t in mine] == ["trust.score_changed", "trust.tier_changed"]
        assert mine[1][0] == mine[0][0] + 1
    assert Recomputer(store, batch=2).run().examined == 0  # nothing due right after


def test_a_failed_batch_write_fails_the_run(store: Store, clock: Clock) -> None:
    from sqlalchemy import delete, insert

    from registry.store.errors import StoreError
    from registry.store.schema import SequenceCounter

    add_agent(store, 5)
    counters = SequenceCounter.__table__
    latest = store.latest_event_seq()
    with store.transaction() as tx:
        tx.unit.execute(delete(counters).where(counters.c.name == "events"))
    try:
        with pytest.raises(StoreError, match="counter 'events' is missing"):
            Recomputer(store, batch=2).run(everything=True)
    finally:
        with store.transaction() as tx:
            tx.unit.execute(insert(counters).values(name="events", value=latest))
    with store.read() as view:
        # Nothing committed: no agent has a score.
        assert all(ScoringInput(*r).score is None for r in view.trust.scoring_inputs())
    assert Recomputer(store, batch=2).run().examined == 5


def test_bulk_write_errors_are_store_errors(store: Store, clock: Clock) -> None:
    from registry.store.errors import InvalidArgument

    (a,) = add_agent(store)
    bad = (a, 500, "medium", 7, None, None, "x", "[]", None, True)  # ring 7 breaks a CHECK
    with pytest.raises(InvalidArgument), store.transaction() as tx:
        tx.trust.write_scores([bad], computed_at=clock.now, read_at=clock.now)
    with store.read() as view:
        assert view.trust.state(a) is None  # rolled back
