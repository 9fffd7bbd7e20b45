"""The enforcer's pure state: snapshot, ordered events, fail-closed decisions."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mesh.enforcer import EnforcerState
from mesh.v1 import events_pb2, types_pb2

ACTIVE, REVOKED, TERMINATED = (
    types_pb2.AGENT_STATUS_ACTIVE,
    types_pb2.AGENT_STATUS_REVOKED,
    types_pb2.AGENT_STATUS_TERMINATED,
)


def state(
    did: str, ring: int, status: int = ACTIVE, score: int | None = None
) -> events_pb2.AgentState:
    return events_pb2.AgentState(
        did=did,
        status=status,
        effective_ring=ring,
        granted_ring=ring,
        score=score or 0,
        has_score=score is not None,
        tier="medium",
    )


def event(
    seq: int, did: str, ring: int, status: int = ACTIVE, score: int | None = None
) -> events_pb2.Event:
    return events_pb2.Event(
        sequence=seq,
        type=events_pb2.EVENT_TYPE_RING_CHANGED,
        agent_did=did,
        state=state(did, ring, status, score),
    )


def test_unknown_agents_are_denied() -> None:
    s = EnforcerState()
    assert not s.allowed("did:mesh:nobody", 3)
    assert s.why_denied("did:mesh:nobody", 3) == "the agent is unknown to this enforcer"


def test_ring_order_lower_is_more_privileged() -> None:
    s = EnforcerState()
    s.begin_snapshot()
    s.apply_snapshot(state("a", 1))
    s.finish_snapshot(10)
    assert s.allowed("a", 1) and s.allowed("a", 2) and s.allowed("a", 3)
    assert not s.allowed("a", 0)
    assert s.last_sequence == 10


def test_demotion_event_applies_and_reports_a_demotion() -> None:
    s = EnforcerState()
    s.begin_snapshot()
    s.apply_snapshot(state("a", 1))
    s.finish_snapshot(10)
    change = s.apply_event(event(11, "a", 3))
    assert change is not None and change.demoted
    assert not s.allowed("a", 2)
    assert s.allowed("a", 3)


def test_revoked_and_terminated_are_denied_everything() -> None:
    s = EnforcerState()
    s.apply_event(event(1, "a", 0, REVOKED))
    s.apply_event(event(2, "b", 0, TERMINATED))
    for did in ("a", "b"):
        assert not s.allowed(did, 3)
    assert s.why_denied("b", 3) == "the agent is terminated"


def test_events_at_or_below_the_position_are_ignored() -> None:
    s = EnforcerState()
    s.apply_event(event(5, "a", 3))
    assert s.apply_event(event(5, "a", 0)) is None
    assert s.apply_event(event(4, "a", 0)) is None
    assert not s.allowed("a", 0)


def test_old_picture_answers_until_the_new_snapshot_is_complete() -> None:
    s = EnforcerState()
    s.apply_event(event(1, "a", 2))
    s.begin_snapshot()
    s.apply_snapshot(state("a", 3))
    assert s.allowed("a", 2)  # still the old picture
    changes = s.finish_snapshot(7)
    assert not s.allowed("a", 2)
    assert [c.agent_did for c in changes] == ["a"] and changes[0].demoted


@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from([ACTIVE, REVOKED])), min_size=1))
def test_final_decision_is_the_last_event(history: list[tuple[int, int]]) -> None:
    s = EnforcerState()
    for seq, (ring, status) in enumerate(history, start=1):
        s.apply_event(event(seq, "a", ring, status))
    ring, status = history[-1]
    for required in range(4):
        assert s.allowed("a", required) == (status == ACTIVE and ring <= required)
