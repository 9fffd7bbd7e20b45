"""Watch and the Enforcer against the real server: snapshot then tail, the whole
report -> recompute -> event -> enforcer chain, the kill switch, authorisation,
100 forced disconnects with events flowing, slow subscribers, pruned sequences."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from fixtures_registry import RunningRegistry
from test_trust_service import low_report, principal, trust

from mesh.client.channel import TLSConfig
from mesh.enforcer import Change, Enforcer, LowTrust, RingDenied, TrustMonitor
from mesh.v1 import agents_pb2, events_pb2, events_pb2_grpc, trust_pb2
from registry.events import types as event_types
from registry.principals import issue_principal
from registry.scoring.state import current_state

_names = iter(range(10**6))


def enforcer_tls(registry: RunningRegistry) -> TLSConfig:
    cred = issue_principal(registry.ca, registry.store, "enforcer", f"gate-{next(_names)}")
    return TLSConfig(
        root_pem=registry.bundle_pem,
        cert_chain_pem=cred.issued.chain_pem(),
        private_key_pem=cred.issued.private_key_pem(),
    )


def make_enforcer(registry: RunningRegistry, **kwargs: object) -> Enforcer:
    return Enforcer.connect(
        registry.address,
        tls=enforcer_tls(registry),
        mtls_registry=registry.mtls_address,
        **kwargs,  # type: ignore[arg-type]
    )


def watch(ch: grpc.Channel, **kwargs: object) -> grpc.Future:
    return events_pb2_grpc.EventServiceStub(ch).Watch(events_pb2.WatchRequest(**kwargs))


def events_of(registry: RunningRegistry, did: str, after: int) -> list[int]:
    """Every event of ``did`` after ``after`` in the table (the scheduler writes some too)."""
    with registry.store.read() as view:
        return [e.seq for e in view.events.since(after, limit=10_000, agent_did=did)]


def append_events(registry: RunningRegistry, did: str, n: int) -> list[int]:
    """Real events through the real store: ``n`` score changes of ``did``."""
    seqs = []
    for _ in range(n):
        with registry.store.transaction() as tx:
            state = dict(current_state(tx, did))
            state["score"] = random.randint(0, 1000)
            seqs.append(tx.events.append(event_types.SCORE_CHANGED, did, {"state": state}))
    return seqs


def test_report_recompute_event_enforcer_sees_demotion(any_registry: RunningRegistry) -> None:
    registry = any_registry
    agent = registry.register("watch/worker")
    ops = trust(registry.operator())
    ops.Recompute(trust_pb2.RecomputeRequest(dids=[agent.did]))
    enforcer = make_enforcer(registry)
    monitor = TrustMonitor(enforcer)
    monitor.watch(agent.did, min_trust_score=400)
    alerts: list[LowTrust] = []
    demotions: list[Change] = []
    alerted = threading.Event()

    @monitor.on_low_trust
    def on_low(alert: LowTrust) -> None:
        alerts.append(alert)
        alerted.set()

    enforcer.on_demotion(demotions.append)

    @enforcer.gate(2)
    def run_query(agent_did: str, sql: str) -> str:
        return f"ran {sql}"

    with monitor:
        assert enforcer.wait_synced(20)
        assert enforcer.allowed(agent.did, 2) and not enforcer.allowed(agent.did, 1)
        assert run_query(agent_did=agent.did, sql="select 1") == "ran select 1"
        assert monitor.score(agent.did) is not None and monitor.score(agent.did) >= 400

        reporter = principal(registry, "reporter", f"sre-{next(_names)}")
        trust(reporter).ReportSignals(low_report(agent.did, "bad-day"))
        result = ops.Recompute(trust_pb2.RecomputeRequest(dids=[agent.did]))
        assert enforcer.wait_for(result.last_sequence, 20)
        assert alerted.wait(5)

        assert not enforcer.allowed(agent.did, 2) and enforcer.allowed(agent.did, 3)
        with pytest.raises(RingDenied, match="effective ring is 3"):
            run_query(agent_did=agent.did, sql="drop table users")
        assert alerts[0].agent_did == agent.did and alerts[0].score < 400
        assert alerts[0].ring == 3 and alerts[0].min_trust_score == 400
        assert any(d.agent_did == agent.did and d.new.effective_ring == 3 for d in demotions)
        assert enforcer.reconnects == 0


def test_kill_switch_is_pushed_without_a_recompute(registry: RunningRegistry) -> None:
    agent = registry.register("watch/killed")
    with make_enforcer(registry) as enforcer:
        assert enforcer.wait_synced(20)
        assert enforcer.allowed(agent.did, 2)
        registry.agents(registry.operator()).TerminateAgent(
            agents_pb2.TerminateAgentRequest(did=agent.did, reason="kill switch")
        )
        latest = registry.store.latest_event_seq()
        assert enforcer.wait_for(latest, 20)
        assert not enforcer.allowed(agent.did, 3)
        with pytest.raises(RingDenied, match="terminated"):
            enforcer.check(agent.did, 3)


def test_snapshot_then_live_registration(registry: RunningRegistry) -> None:
    before = registry.register("watch/before")
    with make_enforcer(registry) as enforcer:
        assert enforcer.wait_synced(20)
        assert enforcer.state.get(before.did) is not None
        after = registry.register("watch/after")
        assert enforcer.wait_for(registry.store.latest_event_seq(), 20)
        view = enforcer.state.get(after.did)
        assert view is not None and view.active and view.effective_ring == 2
    # Unknown agents are refused (fail closed).
    assert not enforcer.allowed("did:mesh:unknown", 3)


def test_agents_watch_themselves_fully_and_peers_identity_only(
    registry: RunningRegistry,
) -> None:
    agent = registry.register("watch/self")
    other = registry.register("watch/other")
    stream = watch(agent.channel())
    first = next(stream)
    assert first.snapshot.did == agent.did
    assert next(stream).WhichOneof("item") == "snapshot_done"
    stream.cancel()
    with pytest.raises(grpc.RpcError) as err:
        next(watch(agent.channel(), agent_dids=[other.did]))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as err:
        next(
            watch(
                agent.channel(), agent_dids=[other.did], types=[events_pb2.EVENT_TYPE_RING_CHANGED]
            )
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # A peer's identity events are allowed, with its trust left out (sandbox ring, no score).
    peers = watch(
        agent.channel(),
        agent_dids=[other.did],
        types=[events_pb2.EVENT_TYPE_AGENT_REVOKED, events_pb2.EVENT_TYPE_KEY_ROTATED],
    )
    seen = next(peers).snapshot
    assert seen.did == other.did and seen.current_kid
    assert (seen.has_score, seen.tier, seen.effective_ring) == (False, "", 3)
    assert next(peers).WhichOneof("item") == "snapshot_done"
    peers.cancel()
    reporter = principal(registry, "reporter", f"r-{next(_names)}")
    with pytest.raises(grpc.RpcError) as err:
        next(watch(reporter))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as err:
        next(watch(registry.anonymous()))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as err:
        next(watch(registry.operator(), types=[99]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        next(watch(registry.operator(), agent_dids=["not a did"]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_filters_by_agent_and_type(registry: RunningRegistry) -> None:
    a = registry.register("watch/filter-a")
    b = registry.register("watch/filter-b")
    start = registry.store.latest_event_seq()
    append_events(registry, b.did, 3)
    ring_seq = None
    with registry.store.transaction() as tx:
        ring_seq = tx.events.append(
            event_types.RING_CHANGED, a.did, {"state": dict(current_state(tx, a.did))}
        )
    append_events(registry, a.did, 2)
    stream = watch(
        registry.operator(),
        from_sequence=start,
        agent_dids=[a.did],
        types=[events_pb2.EVENT_TYPE_RING_CHANGED],
    )
    item = next(stream)
    assert item.event.sequence == ring_seq and item.event.agent_did == a.did
    assert item.event.state.did == a.did
    stream.cancel()


def test_hundred_forced_disconnects_lose_and_repeat_nothing(registry: RunningRegistry) -> None:
    agent = registry.register("watch/churn")
    start = registry.store.latest_event_seq()
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        while not stop.is_set():
            written.extend(append_events(registry, agent.did, 1))
            time.sleep(0.001)

    thread = threading.Thread(target=writer)
    thread.start()
    channel = registry.operator()
    received: list[int] = []
    position = start
    rng = random.Random(7)
    try:
        for _ in range(100):
            stream = watch(channel, from_sequence=position, agent_dids=[agent.did])
            for _ in range(rng.randint(1, 4)):
                item = next(stream)
                received.append(item.event.sequence)
                position = item.event.sequence
            stream.cancel()  # a forced disconnect mid-stream
    finally:
        stop.set()
        thread.join()
    last = written[-1]
    stream = watch(channel, from_sequence=position, agent_dids=[agent.did])
    while position < last:
        position = next(stream).event.sequence
        received.append(position)
    stream.cancel()
    # None lost, none repeated, in order (the table may hold scheduler events too).
    assert received == events_of(registry, agent.did, start)[: len(received)]
    assert set(written) <= set(received)


def test_enforcer_survives_hundred_reconnects(registry: RunningRegistry) -> None:
    agent = registry.register("watch/enforcer-churn")
    with make_enforcer(registry, agent_dids=[agent.did]) as enforcer:
        assert enforcer.wait_synced(20)
        start = enforcer.state.last_sequence
        seen: list[int] = []
        enforcer.on_change(lambda change: seen.append(change.sequence))
        written: list[int] = []
        for _ in range(100):
            written.extend(append_events(registry, agent.did, 2))
            enforcer.reconnect()  # events in flight while the stream drops
            written.extend(append_events(registry, agent.did, 1))
            assert enforcer.wait_for(written[-1], 30)
        assert seen == events_of(registry, agent.did, start)
        assert set(written) <= set(seen)
        assert enforcer.reconnects >= 100


def test_slow_subscriber_is_detached_and_catches_up(registry: RunningRegistry) -> None:
    start = registry.store.latest_event_seq()
    agent = registry.register("watch/slow")  # its registration is the first event
    hub = registry.server.hub
    assert hub is not None
    old_max = hub.max_queue
    detached = hub.detachments
    hub.max_queue = 4
    try:
        # A fixed 64 KiB flow-control window (no BDP growth): a reader that stops
        # reading fills it, then its queue, within a few hundred events.
        creds = grpc.ssl_channel_credentials(
            registry.bundle_pem, registry.operator_key, registry.operator_cert
        )
        slow_channel = grpc.secure_channel(
            registry.mtls_address, creds, options=[("grpc.http2.bdp_probe", 0)]
        )
        slow = watch(slow_channel, from_sequence=start, agent_dids=[agent.did])
        fast = make_enforcer(registry, agent_dids=[agent.did]).start()
        assert fast.wait_synced(20)
        next_item = next(slow)  # attached; now stop reading while events flow
        written = []
        for _ in range(10):
            with registry.store.transaction() as tx:
                state = dict(current_state(tx, agent.did))
                last = tx.trust.append_events(
                    [(event_types.SCORE_CHANGED, agent.did, {"state": state, "pad": "x" * 200})]
                    * 200
                )
            written.extend(range(last - 199, last + 1))
        assert fast.wait_for(written[-1], 30)
        received = [next_item.event.sequence]
        while received[-1] < written[-1]:
            received.append(next(slow).event.sequence)
        slow.cancel()
        slow_channel.close()
        fast.stop()
    finally:
        hub.max_queue = old_max
    assert received == events_of(registry, agent.did, start)[: len(received)]
    assert set(written) <= set(received)
    assert hub.detachments > detached  # it was dropped, and caught up from the table


def test_pruned_sequence_means_resnapshot(registry: RunningRegistry) -> None:
    agent = registry.register("watch/pruned")
    old = registry.store.latest_event_seq()
    append_events(registry, agent.did, 3)
    with registry.store.transaction() as tx:
        deleted = tx.trust.prune_events(before=datetime.now(UTC) + timedelta(days=1), keep_last=1)
    assert deleted > 0
    with pytest.raises(grpc.RpcError) as err:
        next(watch(registry.operator(), from_sequence=old - 1))
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert "snapshot" in (err.value.details() or "")
    with pytest.raises(grpc.RpcError) as err:
        next(watch(registry.operator(), from_sequence=10**12))
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
    # An enforcer that was at the old position re-snapshots and carries on.
    enforcer = make_enforcer(registry)
    enforcer.state.last_sequence = old - 1
    with enforcer:
        assert enforcer.wait_synced(20)
        assert enforcer.state.get(agent.did) is not None
        assert enforcer.last_error is not None and "OUT_OF_RANGE" in enforcer.last_error


def test_batched_snapshot_holds_every_agent(registry: RunningRegistry) -> None:
    registry.register("watch/batch-a")
    registry.register("watch/batch-b")
    with registry.store.read() as view:
        expected = {row.did for row in view.trust.snapshot()}
        latest = view.events.latest_seq()
    stream = watch(registry.operator(), batch_snapshot=True)
    seen: set[str] = set()
    for item in stream:
        kind = item.WhichOneof("item")
        assert kind != "snapshot"  # batched only
        if kind == "snapshot_batch":
            assert 0 < len(item.snapshot_batch.states) <= 1000
            seen.update(s.did for s in item.snapshot_batch.states)
        elif kind == "snapshot_done":
            assert item.snapshot_done.sequence >= latest
            break
    stream.cancel()
    assert expected <= seen
