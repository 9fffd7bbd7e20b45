"""Execution rings: effective ring table and the hysteresis state machine."""

from __future__ import annotations

from datetime import timedelta

import pytest
from _trust_strategies import NOW
from hypothesis import given, settings
from hypothesis import strategies as st

from trust import (
    ExecutionRing,
    Policy,
    RingDecision,
    RingState,
    TrustError,
    decide,
    effective_ring,
    ring_for_score,
    threshold,
)

P = Policy.default()  # tiers: <400 sandbox, 400 user, 600 system, 800 kernel; margin 25, hold 10m
K, S, U, X = ExecutionRing.KERNEL, ExecutionRing.SYSTEM, ExecutionRing.USER, ExecutionRing.SANDBOX
HOLD = P.rings.promotion_hold
MARGIN = int(P.rings.promotion_margin)


def test_ring_numbers_and_agt_names() -> None:
    assert [int(r) for r in (K, S, U, X)] == [0, 1, 2, 3]
    assert ExecutionRing.RING_3_SANDBOX is ExecutionRing.SANDBOX
    assert ExecutionRing.RING_0_ROOT is ExecutionRing.KERNEL
    assert ExecutionRing.parse("Sandbox") is X
    assert ExecutionRing.parse("1") is S
    assert ExecutionRing.parse("ring9") is None
    assert [r.label for r in ExecutionRing] == ["kernel", "system", "user", "sandbox"]


@pytest.mark.parametrize(
    ("granted", "score", "expected"),
    [
        (K, 1000, K),
        (K, 800, K),
        (K, 799, S),
        (K, 600, S),
        (K, 599, U),
        (K, 400, U),
        (K, 399, X),
        (K, 0, X),
        (U, 1000, U),  # the grant caps a perfect score
        (U, 650, U),
        (U, 450, U),
        (U, 150, X),  # the score caps a generous grant
        (X, 1000, X),
        (S, 900, S),
        (S, 700, S),
        (S, 500, U),
    ],
)
def test_effective_ring_table(granted: ExecutionRing, score: int, expected: ExecutionRing) -> None:
    assert effective_ring(granted, score, P) is expected


def test_terminated_is_always_sandbox() -> None:
    assert effective_ring(K, 1000, P, terminated=True) is X
    d = decide(RingState(K), K, 1000, NOW, P, terminated=True)
    assert d.ring is X and d.denied and d.changed and d.demoted
    again = decide(d.new_state, K, 1000, NOW + HOLD * 10, P, terminated=True)
    assert again.ring is X and again.denied and not again.changed


@pytest.mark.parametrize(("ring", "expected"), [(K, 800), (S, 600), (U, 400), (X, 0)])
def test_thresholds(ring: ExecutionRing, expected: int) -> None:
    assert threshold(ring, P) == expected
    assert ring_for_score(expected, P) <= ring
    if expected:
        assert ring_for_score(expected - 1, P) > ring


def test_threshold_of_a_ring_no_tier_allows() -> None:
    p = Policy.from_mapping({"rings": {"tier_rings": {"maximum": "system"}}})
    assert threshold(K, p) is None


def test_demotion_is_immediate() -> None:
    state = RingState(S)
    d = decide(state, K, 450, NOW, P)
    assert d.changed and d.demoted and d.ring is U
    assert "at once" in d.reason
    d = decide(d.new_state, K, 10, NOW, P)
    assert d.ring is X and d.changed


def test_grant_reduction_demotes_immediately() -> None:
    d = decide(RingState(S), U, 900, NOW, P)
    assert d.ring is U and d.changed and "operator granted user" in d.reason


def test_promotion_waits_for_hold_above_threshold_plus_margin() -> None:
    state = RingState(U)
    t = NOW
    # Above the threshold but inside the margin: nothing starts.
    d = decide(state, K, 600 + MARGIN - 1, t, P)
    assert not d.changed and d.new_state.candidate is None
    assert "promotion needs the score at 600+25" in d.reason
    # Above threshold + margin: the hold starts.
    d = decide(d.new_state, K, 600 + MARGIN, t, P)
    assert not d.changed and d.new_state.candidate is S and d.new_state.candidate_since == t
    assert d.new_state.promotion_due_at(P) == t + HOLD
    d = decide(d.new_state, K, 700, t + HOLD - timedelta(seconds=1), P)
    assert not d.changed and d.new_state.candidate is S
    d = decide(d.new_state, K, 700, t + HOLD, P)
    assert d.changed and d.promoted and d.ring is S and d.new_state.candidate is None
    assert "promoted user -> system" in d.reason


def test_dip_below_margin_restarts_the_hold() -> None:
    t = NOW
    d = decide(RingState(U), K, 700, t, P)
    d = decide(d.new_state, K, 610, t + HOLD / 2, P)  # below 625: hold lost
    assert d.new_state.candidate is None and d.ring is U
    d = decide(d.new_state, K, 700, t + HOLD, P)
    assert d.new_state.candidate_since == t + HOLD and not d.changed
    d = decide(d.new_state, K, 700, t + 2 * HOLD, P)
    assert d.ring is S


def test_oscillating_score_never_promotes() -> None:
    state = RingState(U)
    for minute in range(600):
        score = 600 + MARGIN + 1 if minute % 2 == 0 else 599
        d = decide(state, K, score, NOW + timedelta(minutes=minute), P)
        assert d.ring is U, f"promoted at minute {minute}"
        state = d.new_state
    # The same holds for an oscillation just around threshold + margin.
    for minute in range(600):
        score = 600 + MARGIN if minute % 3 else 600 + MARGIN - 1
        d = decide(state, K, score, NOW + timedelta(minutes=minute), P)
        assert d.ring is U
        state = d.new_state


def test_promotion_goes_one_held_ring_at_a_time() -> None:
    t = NOW
    d = decide(RingState(X), K, 500, t, P)  # qualifies for user
    assert d.new_state.candidate is U
    d = decide(d.new_state, K, 900, t + timedelta(minutes=5), P)  # now for kernel too
    assert d.new_state.candidate is U and d.new_state.candidate_since == t
    d = decide(d.new_state, K, 900, t + HOLD, P)
    assert d.ring is U  # user held for the whole hold; kernel only for half of it
    d = decide(d.new_state, K, 900, t + HOLD + timedelta(seconds=1), P)
    assert d.new_state.candidate is K
    d = decide(d.new_state, K, 900, t + 2 * HOLD + timedelta(seconds=1), P)
    assert d.ring is K


def test_falling_candidate_keeps_its_hold() -> None:
    t = NOW
    d = decide(RingState(X), K, 900, t, P)
    assert d.new_state.candidate is K
    d = decide(d.new_state, K, 500, t + timedelta(minutes=5), P)  # still qualifies for user
    assert d.new_state.candidate is U and d.new_state.candidate_since == t
    d = decide(d.new_state, K, 500, t + HOLD, P)
    assert d.ring is U


def test_zero_hold_promotes_at_once() -> None:
    p = Policy.from_mapping({"rings": {"promotion_hold": 0, "promotion_margin": 0}})
    d = decide(RingState(X), K, 600, NOW, p)
    assert d.ring is S and d.changed


def test_initial_state_follows_the_score() -> None:
    assert RingState.initial(K, 500, P) == RingState(U)
    assert RingState.initial(U, 900, P) == RingState(U)
    assert RingState.initial(K, 900, P, terminated=True) == RingState(X)


def test_state_and_arguments_are_validated() -> None:
    with pytest.raises(TrustError):
        RingState(U, S, None)
    with pytest.raises(TrustError, match="not a promotion"):
        RingState(U, X, NOW)
    with pytest.raises(TrustError):
        RingState(2)  # type: ignore[arg-type]
    with pytest.raises(TrustError):
        decide(RingState(U), 1, 500, NOW, P)  # type: ignore[arg-type]
    with pytest.raises(TrustError):
        decide(RingState(U), K, 1001, NOW, P)
    with pytest.raises(TrustError, match="timezone-aware"):
        decide(RingState(U), K, 500, NOW.replace(tzinfo=None), P)


# -- properties -----------------------------------------------------------------------

steps = st.lists(
    st.tuples(st.integers(0, 1000), st.integers(0, 400), st.sampled_from([K, S, U, X])),
    min_size=1,
    max_size=60,
)
policies = st.builds(
    lambda margin, hold: Policy.from_mapping(
        {"rings": {"promotion_margin": margin, "promotion_hold": hold}}
    ),
    st.integers(0, 100),
    st.integers(0, 3600),
)


def _qualifies(
    score: int, margin: float, granted: ExecutionRing, ring: ExecutionRing, policy: Policy
) -> bool:
    t = threshold(ring, policy)
    return granted <= ring and t is not None and score >= t + margin


@settings(max_examples=300, deadline=None)
@given(steps, policies, st.sampled_from([K, S, U, X]))
def test_no_promotion_without_a_full_hold(
    seq: list[tuple[int, int, ExecutionRing]], policy: Policy, start: ExecutionRing
) -> None:
    """Every promotion to ring r at time t is preceded by decisions, spanning at least
    the hold, at all of which the score qualified for r; every drop is immediate."""
    margin = policy.rings.promotion_margin
    hold = policy.rings.promotion_hold
    state = RingState(start)
    t = NOW
    history: list[tuple[object, int, ExecutionRing]] = []
    for score, gap_s, granted in seq:
        t = t + timedelta(seconds=gap_s)
        history.append((t, score, granted))
        d: RingDecision = decide(state, granted, score, t, policy)
        target = effective_ring(granted, score, policy)
        assert d.ring >= target  # never more privileged than score and grant allow
        if target > state.effective:
            assert d.ring == target and d.changed  # demotion at once
        if d.promoted:
            ring = d.ring
            # walk back while the score qualified for `ring`
            j = len(history) - 1
            while j >= 0 and _qualifies(history[j][1], margin, history[j][2], ring, policy):
                j -= 1
            first_qualifying_time = history[j + 1][0]
            assert t - first_qualifying_time >= hold  # type: ignore[operator]
        assert d.changed == (d.ring != state.effective)
        state = d.new_state
