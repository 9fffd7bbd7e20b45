"""Watch fan-out against the real server: streams grouped by filter each get exactly
their events (agents' views of their peers redacted), and streams resume from the
hub's recent events or, when those have moved on, from the table."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
from fixtures_registry import RunningRegistry
from test_watch_live import append_events, events_of, watch

from mesh.v1 import events_pb2
from registry.events import types as event_types
from registry.events.hub import EventHub
from registry.scoring.state import current_state

RING = events_pb2.EVENT_TYPE_RING_CHANGED
REVOKED = events_pb2.EVENT_TYPE_AGENT_REVOKED
BUNDLE = events_pb2.EVENT_TYPE_BUNDLE_CHANGED


def until(condition: Callable[[], bool], seconds: float = 20.0) -> bool:
    """Wait for ``condition`` (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def hub_of(registry: RunningRegistry) -> EventHub:
    hub = registry.server.hub
    assert hub is not None
    return hub


def events_until(stream: grpc.Future, last: int) -> list[events_pb2.Event]:
    """The stream's events up to sequence ``last`` (snapshot items skipped)."""
    got: list[events_pb2.Event] = []
    for item in stream:
        if item.WhichOneof("item") != "event":
            continue
        got.append(item.event)
        if item.event.sequence >= last:
            break
    stream.cancel()
    return got


def append(registry: RunningRegistry, type: str, did: str | None, **extra: object) -> int:
    with registry.store.transaction() as tx:
        payload: dict[str, object] = dict(extra)
        if did is not None:
            state = dict(current_state(tx, did))
            if type == event_types.AGENT_REVOKED:
                # What the operator sees and the peer must not: a score, tier and ring.
                state.update(status="revoked", score=650, tier="high", effective_ring=1)
            payload["state"] = state
        return tx.events.append(type, did, payload)


def test_streams_grouped_by_filter_each_get_exactly_theirs(registry: RunningRegistry) -> None:
    a = registry.register("fanout/a")
    b = registry.register("fanout/b")
    watcher = registry.register("fanout/watcher")
    start = registry.store.latest_event_seq()
    op = registry.operator()
    streams = {
        "a1": watch(op, from_sequence=start, agent_dids=[a.did]),
        "a2": watch(op, from_sequence=start, agent_dids=[a.did]),  # same filter as a1
        "b": watch(op, from_sequence=start, agent_dids=[b.did]),
        "ring": watch(op, from_sequence=start, types=[RING]),
        "all": watch(op, from_sequence=start),
        # An agent following its peer: identity events only, trust cut out.
        "peer": watch(
            watcher.channel(), from_sequence=start, agent_dids=[b.did], types=[REVOKED, BUNDLE]
        ),
    }
    hub = hub_of(registry)
    assert until(lambda: hub.subscriber_count >= len(streams))
    written = [
        (append(registry, event_types.SCORE_CHANGED, a.did), a.did, "score"),
        (append(registry, event_types.RING_CHANGED, b.did), b.did, "ring"),
        (append(registry, event_types.BUNDLE_CHANGED, None, reason="test"), None, "bundle"),
        (append(registry, event_types.RING_CHANGED, a.did), a.did, "ring"),
        (append(registry, event_types.AGENT_REVOKED, b.did), b.did, "revoked"),
        (append(registry, event_types.SCORE_CHANGED, b.did), b.did, "score"),
    ]
    last = written[-1][0]
    table = table_events(registry, start, last)
    to_wire = event_types.TO_WIRE

    def of(dids: tuple[str | None, ...] = (), types: tuple[int, ...] = ()) -> list[int]:
        return [
            seq
            for seq, did, type in table
            if (not dids or did in dids) and (not types or to_wire[type] in types)
        ]

    wanted = {
        "a1": of((a.did, None)),
        "a2": of((a.did, None)),
        "b": of((b.did, None)),
        "ring": of(types=(RING,)),
        "all": of(),
        "peer": of((b.did, None), (REVOKED, BUNDLE)),
    }
    for seq, _, kind in written:  # what we wrote is there, by filter
        assert seq in wanted["all"]
        assert (seq in wanted["ring"]) == (kind == "ring")
        assert (seq in wanted["peer"]) == (kind in ("revoked", "bundle"))
    got = {name: events_until(stream, wanted[name][-1]) for name, stream in streams.items()}
    assert got["all"][-1].sequence == last
    for name, events in got.items():
        assert [e.sequence for e in events] == wanted[name], name
    full = {e.sequence: e for e in got["all"]}
    revoked = next(e for e in got["peer"] if e.type == REVOKED)
    # The operator sees the trust state; the peer only status and key, in the sandbox ring.
    assert full[revoked.sequence].state.has_score
    assert full[revoked.sequence].state.effective_ring == 1
    assert revoked.state.did == b.did and revoked.state.current_kid
    assert revoked.state.status == full[revoked.sequence].state.status
    assert (revoked.state.has_score, revoked.state.tier) == (False, "")
    assert (revoked.state.effective_ring, revoked.state.granted_ring) == (3, 3)
    bundle = next(e for e in got["peer"] if e.type == BUNDLE)
    assert bundle.details_json == full[bundle.sequence].details_json
    # Both streams of one filter were one group: the same bytes, decoded alike.
    assert got["a1"] == got["a2"]


def test_resume_from_recent_events_and_from_the_table(registry: RunningRegistry) -> None:
    agent = registry.register("fanout/resume")
    hub = hub_of(registry)
    start = registry.store.latest_event_seq()
    seqs = append_events(registry, agent.did, 6)
    assert until(lambda: hub.position >= seqs[-1])
    # Within the hub's recent events: taken from memory, in order, nothing repeated.
    middle = seqs[2]
    got = events_until(watch(registry.operator(), from_sequence=middle), seqs[-1])
    assert [e.sequence for e in got] == [s for s, _, _ in table_events(registry, middle, seqs[-1])]
    mine = events_until(
        watch(registry.operator(), from_sequence=middle, agent_dids=[agent.did]), seqs[-1]
    )
    assert [e.sequence for e in mine] == events_of(registry, agent.did, middle)
    # Once the recent events have moved past a position, the table serves it.
    old_limit = hub.recent_limit
    hub.recent_limit = 2
    try:
        more = append_events(registry, agent.did, 5)
        assert until(lambda: hub.position >= more[-1])
        assert not hub.holds(start)
        again = events_until(
            watch(registry.operator(), from_sequence=start, agent_dids=[agent.did]), more[-1]
        )
        assert [e.sequence for e in again] == events_of(registry, agent.did, start)
        assert set(seqs + more) <= {e.sequence for e in again}
    finally:
        hub.recent_limit = old_limit


Row = tuple[int, str | None, str]


def table_events(registry: RunningRegistry, after: int, last: int) -> list[Row]:
    """(seq, agent, stored type) of every event after ``after`` up to ``last``."""
    with registry.store.read() as view:
        return [
            (e.seq, e.agent_did, e.type)
            for e in view.events.since(after, limit=10_000)
            if e.seq <= last
        ]
