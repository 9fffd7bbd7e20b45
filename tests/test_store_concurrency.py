"""The store under concurrent writers: one-time tokens and challenges, the
commit-ordered event sequence, and SQLite's single-writer discipline."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from registry.store import (
    FailedPrecondition,
    Store,
    hash_token,
    open_store,
    verify_audit_chain,
)


def _race(n: int, work: Callable[[int], Any]) -> tuple[list[Any], list[BaseException]]:
    """Run work(0..n-1) on n threads released together; collect results and errors."""
    barrier = threading.Barrier(n)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        try:
            value = work(i)
        except BaseException as exc:
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(value)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_one_token_many_registrations_exactly_one_wins(store: Store) -> None:
    secret = "one-time-secret"
    with store.transaction() as tx:
        tx.tokens.create(
            token_hash=hash_token(secret),
            agent_name="worker",
            created_by="op",
            expires_at=datetime.now(UTC) + timedelta(minutes=5),
        )

    def register(i: int) -> str:
        did = f"did:mesh:racer{i}"
        with store.transaction() as tx:
            token = tx.tokens.consume(hash_token(secret), used_by_did=did)
            tx.agents.create(did=did, name=token.agent_name, spiffe_id=f"spiffe://td/agent/r{i}")
            tx.events.append("agent.registered", did, {})
            tx.audit.append("anonymous", "agent.register", did, {"token": token.id})
        return did

    winners, errors = _race(16, register)
    assert len(winners) == 1, errors
    assert len(errors) == 15
    assert all(isinstance(e, FailedPrecondition) and "already used" in str(e) for e in errors)
    assert [a.did for a in store.list_agents().items] == winners
    with store.read() as view:
        assert view.tokens.find_by_hash(hash_token(secret)).used_by_did == winners[0]  # type: ignore[union-attr]
    assert [e.seq for e in store.events_since(0)] == [1]
    assert verify_audit_chain(store).ok


def test_one_challenge_many_answers_exactly_one_wins(store: Store) -> None:
    with store.transaction() as tx:
        tx.challenges.create(
            nonce="nonce-1",
            purpose="register",
            trust_domain="td",
            expires_at=datetime.now(UTC) + timedelta(minutes=5),
        )

    def answer(i: int) -> int:
        with store.transaction() as tx:
            tx.challenges.consume("nonce-1", purpose="register", trust_domain="td")
        return i

    winners, errors = _race(12, answer)
    assert len(winners) == 1
    assert len(errors) == 11 and all(isinstance(e, FailedPrecondition) for e in errors)


def test_a_concurrent_reader_sees_every_event_in_order_without_gaps(store: Store) -> None:
    writers, per_writer = 4, 25
    total_events = 0
    stop = threading.Event()
    seen: list[int] = []
    violations: list[str] = []

    def reader() -> None:
        last = 0
        while True:
            done = stop.is_set()
            batch = store.events_since(last, limit=50)
            for event in batch:
                if event.seq != last + 1:
                    violations.append(f"after {last} came {event.seq}")
                last = event.seq
                seen.append(event.seq)
            if done and not batch:
                return
            if not batch:
                time.sleep(0.001)  # poll, as a Watch tail does, without starving writers

    def write(w: int) -> int:
        appended = 0
        for i in range(per_writer):
            with store.transaction() as tx:
                did = f"did:mesh:w{w}i{i}"
                tx.agents.create(did=did, name="n", spiffe_id=f"spiffe://td/agent/w{w}i{i}")
                # 1-3 events per transaction: one transaction's events stay contiguous.
                for _ in range(1 + (i % 3)):
                    tx.events.append("agent.registered", did, {"w": w, "i": i})
                    appended += 1
                tx.audit.append(f"writer{w}", "agent.register", did)
        return appended

    watcher = threading.Thread(target=reader)
    watcher.start()
    counts, errors = _race(writers, write)
    stop.set()
    watcher.join()
    assert errors == []
    total_events = sum(counts)
    assert violations == []
    assert seen == list(range(1, total_events + 1))
    assert store.latest_event_seq() == total_events
    result = verify_audit_chain(store)
    assert result.ok and result.count == writers * per_writer


def test_sixty_four_writers_never_hit_database_is_locked(store: Store) -> None:
    def write(i: int) -> int:
        for j in range(3):
            with store.transaction() as tx:
                did = f"did:mesh:t{i}x{j}"
                tx.agents.create(did=did, name="n", spiffe_id=f"spiffe://td/agent/t{i}x{j}")
                tx.events.append("agent.registered", did, {})
                tx.audit.append("op", "agent.register", did)
            # Readers interleave with the writers and never block them.
            assert store.get_agent(did).did == did
        return i

    done, errors = _race(64, write)
    assert errors == [] and len(done) == 64
    with store.read() as view:
        assert view.agents.count() == 64 * 3
    assert store.latest_event_seq() == 64 * 3
    assert verify_audit_chain(store).count == 64 * 3


def _process_writer(db: str, who: int, n: int, ready: Any = None, go: Any = None) -> None:
    s = open_store(f"sqlite:///{db}", Path(db).parent)
    try:
        if ready is not None:
            ready.set()
            go.wait(60)
        for i in range(n):
            with s.transaction() as tx:
                did = f"did:mesh:p{who}i{i}"
                tx.agents.create(did=did, name="n", spiffe_id=f"spiffe://td/agent/p{who}i{i}")
                tx.events.append("agent.registered", did, {})
                tx.audit.append("op", "agent.register", did)
    finally:
        s.close()


def test_sqlite_writers_in_other_processes_wait_instead_of_failing(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    s = open_store(f"sqlite:///{db}", tmp_path)
    s.upgrade()
    ctx = multiprocessing.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    procs = [ctx.Process(target=_process_writer, args=(str(db), 1, 50, ready, go))]
    for p in procs:
        p.start()
    # Start writing only once the other process has imported and opened the store.
    assert ready.wait(60)
    go.set()
    _process_writer(str(db), 99, 50)
    for p in procs:
        p.join(120)
    try:
        assert [p.exitcode for p in procs] == [0]
        assert s.latest_event_seq() == 100
        assert [e.seq for e in s.events_since(0, limit=1000)] == list(range(1, 101))
        assert verify_audit_chain(s).count == 100
    finally:
        s.close()


def test_audit_and_events_in_either_order_do_not_deadlock(store: Store) -> None:
    """One transaction appends an audit entry then an event, another the
    reverse: counters are locked in one fixed order, so neither waits on the
    other in a cycle (PostgreSQL would abort one as a deadlock)."""

    def write(i: int) -> int:
        for j in range(15):
            with store.transaction() as tx:
                if i % 2:
                    tx.audit.append("op", "a", f"s{i}.{j}")
                    tx.events.append("e", None, {"i": i, "j": j})
                else:
                    tx.events.append("e", None, {"i": i, "j": j})
                    tx.audit.append("op", "a", f"s{i}.{j}")
        return i

    done, errors = _race(8, write)
    assert errors == [] and len(done) == 8
    assert store.latest_event_seq() == 8 * 15
    assert verify_audit_chain(store).count == 8 * 15
