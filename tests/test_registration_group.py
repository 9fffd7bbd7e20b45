"""Registrations that reach the store together are written as one batch in one
transaction (SQLite and PostgreSQL), yet each gets the answer it would get
alone: duplicates within the group (one token, two keys; one key retrying;
one challenge twice) are told apart exactly, and nothing of a refused
registration is left behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from fixtures_registry import RunningRegistry

from mesh.keyhistory import KeyHistory
from mesh.keys import IdentityKey
from mesh.v1 import registration_pb2
from registry.scoring.state import current_state
from registry.store import hash_token, verify_audit_chain


def _together(registry: RunningRegistry, calls: list[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` (RPCs) on threads while the store's writer is held, so that
    their writes queue up and are applied as one group; results or RpcErrors."""
    store = registry.store
    started, release = threading.Event(), threading.Event()

    def hold(tx: Any) -> None:
        started.set()
        assert release.wait(60)

    held = store.submit(hold)
    assert started.wait(30)
    groups_before = store.group_stats.groups
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except grpc.RpcError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while store.queued_writes < len(calls) and time.monotonic() < deadline:
        time.sleep(0.01)
    queued = store.queued_writes
    release.set()
    held.result(30)
    for t in threads:
        t.join(60)
    assert queued == len(calls), "the registrations did not all reach the store's queue"
    assert store.group_stats.groups == groups_before + 1, "they were not applied as one group"
    return results


def _code(result: Any) -> grpc.StatusCode | None:
    return result.code() if isinstance(result, grpc.RpcError) else None


def _rows(registry: RunningRegistry, did: str) -> tuple[int, int, int, int]:
    with registry.store.read() as view:
        keys = len(view.keys.list_for_agent(did))
        svids = len(view.svids.list_for_agent(did))
    # Registration's own rows (the trust scheduler may add score events and audit rows).
    events = [e for e in registry.store.events_since(0, limit=10_000)
              if e.agent_did == did and e.type == "agent.registered"]
    audit = [r for r in registry.store.audit_rows(limit=10_000)
             if r.subject == did and r.action == "agent.register"]
    return keys, svids, len(events), len(audit)


def test_a_group_of_first_registrations_is_written_at_once(any_registry: RunningRegistry) -> None:
    registry = any_registry
    identities = [IdentityKey.generate() for _ in range(12)]
    requests = []
    for i, identity in enumerate(identities):
        history = KeyHistory.incept(identity, datetime.now(UTC)) if i % 2 else None
        request, _ = registry.register_request(
            identity, registry.join_token(f"group/agent-{i}"), history=history,
            metadata={"i": str(i)},
        )
        requests.append(request)
    batched_before = registry.store.group_stats.batched
    stub = registry.registration()
    results = _together(registry, [lambda r=r: stub.Register(r) for r in requests])
    assert all(_code(r) is None and r.created for r in results), [_code(r) for r in results]
    assert registry.store.group_stats.batched - batched_before == 12
    for i, response in enumerate(results):
        agent = registry.store.get_agent(response.did)
        assert (agent.name, agent.metadata) == (f"group/agent-{i}", {"i": str(i)})
        assert _rows(registry, response.did) == (1, 1, 1, 1)
        with registry.store.read() as view:
            assert (view.keys.history(response.did) is not None) == bool(i % 2)
            # The event's state, built without reading the agent back, is what a
            # read of the committed agent gives.
            event = next(e for e in view.events.since(0, limit=10_000, agent_did=response.did)
                         if e.type == "agent.registered")
            assert event.payload["state"] == dict(current_state(view, response.did))
            assert event.payload["kid"] == view.keys.current(response.did).kid  # type: ignore[union-attr]
    assert verify_audit_chain(registry.store).ok


def test_duplicates_within_a_group_get_their_own_answers(any_registry: RunningRegistry) -> None:
    registry = any_registry
    stub = registry.registration()
    # One token, two different keys: exactly one gets it.
    shared = registry.join_token("group/shared")
    first, _ = registry.register_request(IdentityKey.generate(), shared)
    second, _ = registry.register_request(IdentityKey.generate(), shared)
    # One key presenting its token twice (a client retrying): one agent, both answered.
    retrier = IdentityKey.generate()
    retry_token = registry.join_token("group/retry")
    retry_a, _ = registry.register_request(retrier, retry_token)
    retry_b, _ = registry.register_request(retrier, retry_token)
    # One request sent twice: its challenge is used once.
    replayed, _ = registry.register_request(IdentityKey.generate(), registry.join_token("group/r"))
    # And one ordinary registration beside them.
    plain, _ = registry.register_request(IdentityKey.generate(), registry.join_token("group/p"))
    calls = [first, second, retry_a, retry_b, replayed, replayed, plain]
    results = _together(registry, [lambda r=r: stub.Register(r) for r in calls])

    token_results = results[0:2]
    winners = [r for r in token_results if _code(r) is None]
    assert len(winners) == 1 and winners[0].created
    loser = next(r for r in token_results if _code(r) is not None)
    assert _code(loser) is grpc.StatusCode.UNAUTHENTICATED
    assert "already used" in loser.details()
    loser_key = (second if token_results[0] is winners[0] else first).public_key
    with registry.store.read() as view:
        assert view.tokens.find_by_hash(hash_token(shared)).used_by_did == winners[0].did  # type: ignore[union-attr]
        from mesh.keys.identity_key import key_id

        assert view.keys.find_by_kid(key_id(loser_key)) is None

    assert _code(results[2]) is None and _code(results[3]) is None
    assert results[2].did == results[3].did
    assert sorted([results[2].created, results[3].created]) == [False, True]
    # One agent, one key, one event, one audit entry; two SVIDs (one per answer).
    assert _rows(registry, results[2].did) == (1, 2, 1, 1)

    replay_codes = sorted([_code(results[4]), _code(results[5])], key=str)
    assert replay_codes.count(None) == 1
    assert grpc.StatusCode.FAILED_PRECONDITION in replay_codes
    refused = results[4] if _code(results[4]) is not None else results[5]
    assert "challenge" in refused.details()

    assert _code(results[6]) is None and results[6].created
    assert _rows(registry, results[6].did) == (1, 1, 1, 1)
    assert verify_audit_chain(registry.store).ok


def test_a_refused_registration_in_a_group_leaves_nothing(any_registry: RunningRegistry) -> None:
    registry = any_registry
    stub = registry.registration()
    good = [registry.register_request(IdentityKey.generate(), registry.join_token("group/ok"))[0]
            for _ in range(3)]
    unknown_token, _ = registry.register_request(IdentityKey.generate(), "not-a-real-token")
    revoked_token = registry.join_token("group/revoked")
    with registry.store.transaction() as tx:
        tx.tokens.revoke(tx.tokens.find_by_hash(hash_token(revoked_token)).id)  # type: ignore[union-attr]
    revoked, _ = registry.register_request(IdentityKey.generate(), revoked_token)
    agents_before = registry.store.list_agents(page_size=1000).items
    events_before = registry.store.latest_event_seq()
    calls = [good[0], unknown_token, good[1], revoked, good[2]]
    results = _together(registry, [lambda r=r: stub.Register(r) for r in calls])
    assert [_code(r) for r in results] == [
        None, grpc.StatusCode.UNAUTHENTICATED, None, grpc.StatusCode.UNAUTHENTICATED, None,
    ]
    agents_after = registry.store.list_agents(page_size=1000).items
    assert len(agents_after) == len(agents_before) + 3
    # (The trust scheduler may append score events meanwhile: count registrations only.)
    new_events = [e for e in registry.store.events_since(events_before, limit=10_000)
                  if e.type == "agent.registered"]
    assert sorted(e.agent_did for e in new_events) == sorted(results[i].did for i in (0, 2, 4))
    with registry.store.read() as view:
        for request in (unknown_token, revoked):
            assert view.challenges.find(request.challenge.hex()) is None
    assert verify_audit_chain(registry.store).ok


@pytest.mark.parametrize("field", ["challenge", "token"])
def test_expiry_is_judged_at_write_time(registry: RunningRegistry, field: str) -> None:
    """A request refused in the set-based path for a reason only the one-by-one
    path can name still gets the precise status."""
    stub = registry.registration()
    identity = IdentityKey.generate()
    token = registry.join_token("group/expiry", ttl=1 if field == "token" else 0)
    request, _ = registry.register_request(identity, token)
    if field == "token":
        time.sleep(1.2)
        with pytest.raises(grpc.RpcError) as info:
            stub.Register(request)
        assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert "expired" in info.value.details()
    else:
        stub.Register(request)
        again = registration_pb2.RegisterRequest()
        again.CopyFrom(request)
        with pytest.raises(grpc.RpcError) as info:
            stub.Register(again)
        assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
