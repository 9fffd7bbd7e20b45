"""The recompute's one-pass batch scorer against the reference reading of the same row:
``to_signals`` -> ``compute_score`` / ``next_recompute_due`` -> ``RingState.initial`` or
``decide`` -> ``json.dumps`` of the breakdown and event payloads. Same score, ring,
reason, due time, history flag, and byte for byte the same JSON."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from _trust_strategies import NOW, ages, ago, fractions
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.events import types as event_types
from registry.scoring.inputs import json_inputs, to_signals
from registry.scoring.recompute import BatchScorer
from registry.scoring.state import state_payload
from registry.store.repos.trust import ScoreResult, ScoringInput, ScoringRow, ViolationRow
from trust import (
    ExecutionRing,
    Policy,
    RingState,
    compute_score,
    decide,
    next_recompute_due,
    tier_for,
)

POLICIES = (
    Policy.default(),
    Policy.from_mapping({"recompute": {"min_interval": 0}}),
    Policy.from_mapping(
        {
            "rings": {"promotion_margin": 0, "promotion_hold": "90s"},
            "weights": {"credential_age": 0.4, "audit_log_completeness": 0},
            "factors": {"success_rate": {"zero_at": 0.8, "full_at": 0.99, "prior": 0.3}},
        }
    ),
)
DID = "did:mesh:2fZtqkFcpJ4NX8c3PSuRn5LSmfEA"
# Reporters, reasons and kids with quotes, backslashes, control and non-ASCII characters.
texts = st.text(max_size=12)
# A reporter is a principal: named (stored "" reads as "unknown").
sources = st.just("") | st.text(min_size=1, max_size=12).filter(lambda s: bool(s.strip()))


def _fading() -> Any:
    return st.none() | st.tuples(fractions, ages.map(ago), sources)


@st.composite
def rows(draw: st.DrawFn) -> tuple[ScoringInput, list[ViolationRow]]:
    has_state = draw(st.booleans())
    score = draw(st.none() | st.integers(0, 1000)) if has_state else None
    tier = tier_for(score).value if score is not None else None
    candidate_ring = draw(st.none() | st.integers(0, 3)) if has_state else None
    candidate_since = (
        draw(st.floats(0, 7200).map(ago)) if candidate_ring is not None else None
    )
    sr, eb, au = (draw(_fading()) if has_state else None for _ in range(3))

    def parts(x: tuple[float, datetime, str] | None) -> tuple[Any, Any, str]:
        return (None, None, "") if x is None else x

    row = ScoringInput(
        DID,
        draw(st.sampled_from(["active", "active", "active", "revoked", "terminated"])),
        draw(st.integers(0, 3)),
        draw(ages.map(ago)),
        draw(texts),
        draw(st.none() | ages.map(ago)),
        has_state,
        score,
        tier,
        draw(st.integers(0, 3)) if has_state else 3,
        candidate_ring,
        candidate_since,
        *parts(sr),
        *parts(eb),
        *parts(au),
    )
    violations = draw(
        st.lists(
            st.builds(
                lambda sev, at, reason, by: ViolationRow(DID, sev, at, reason, by),
                st.sampled_from(["low", "medium", "high", "critical"]),
                ages.map(ago),
                texts,
                sources,
            ),
            max_size=4,
        )
    )
    return row, violations


def reference(
    stored: ScoringRow, violations: list[ViolationRow], now: datetime, policy: Policy
) -> tuple[dict[str, Any], bool, list[tuple[str, str, dict[str, Any]]]]:
    """What the recompute stores for one agent, by way of the public ``trust`` API."""
    row = ScoringInput(*stored)
    signals = to_signals(row, violations)
    score = compute_score(signals, policy, now)
    granted = ExecutionRing(row.granted_ring)
    terminated = row.status != "active"
    if row.score is None:
        ring_state = RingState.initial(granted, score.value, policy, terminated=terminated)
        reason = (
            f"first placement: score {score.value} ({score.tier.value}) allows "
            f"{policy.rings.tier_rings.ring(score.tier).label}, operator granted "
            f"{granted.label}"
        )
        if terminated:
            reason = "agent is terminated or revoked: sandbox, every call denied"
    else:
        ring = ExecutionRing(min(max(row.effective_ring, 0), 3))
        candidate, since = row.candidate_ring, row.candidate_since
        state = (
            RingState(ring)
            if candidate is None or since is None or candidate >= ring
            else RingState(ring, ExecutionRing(candidate), since)
        )
        decision = decide(state, granted, score.value, now, policy, terminated=terminated)
        ring_state, reason = decision.new_state, decision.reason
    due = next_recompute_due(signals, policy, now)
    promotion = ring_state.promotion_due_at(policy)
    if promotion is not None and (due is None or promotion < due):
        due = promotion
    ring_now = int(ring_state.effective)
    stored = {
        "score": score.value,
        "tier": score.tier.value,
        "effective_ring": ring_now,
        "candidate_ring": None if ring_state.candidate is None else int(ring_state.candidate),
        "candidate_since": ring_state.candidate_since,
        "ring_reason": reason,
        "breakdown": json.dumps(
            [
                {
                    "name": f.name,
                    "value": f.value,
                    "weight": f.weight,
                    "points": f.contribution,
                    "inputs": json_inputs(f.inputs),
                }
                for f in score.factors
            ]
        ),
        "next_due_at": due,
    }
    if terminated:
        prev_ring = 3
    elif row.score is None:
        prev_ring = row.granted_ring
    else:
        prev_ring = row.effective_ring
    changed = (score.value, score.tier.value, ring_now) != (row.score, row.tier, prev_ring)
    events: list[tuple[str, str, dict[str, Any]]] = []
    if changed:
        payload = dict(
            state_payload(
                status=row.status,
                granted_ring=row.granted_ring,
                current_kid=row.current_kid,
                score=score.value,
                tier=score.tier.value,
                effective_ring=ring_now,
            )
        )
        if score.value != row.score:
            events.append(
                (event_types.SCORE_CHANGED, DID,
                 {"old": row.score, "new": score.value, "state": payload})
            )
        if score.tier.value != row.tier:
            events.append(
                (event_types.TIER_CHANGED, DID,
                 {"old": row.tier, "new": score.tier.value, "state": payload})
            )
        if ring_now != prev_ring:
            events.append(
                (event_types.RING_CHANGED, DID,
                 {"old": prev_ring, "new": ring_now, "reason": reason, "state": payload})
            )
    return stored, changed, events


@settings(max_examples=400, deadline=None)
@given(rows(), st.sampled_from(range(len(POLICIES))), st.floats(0, 3600))
def test_batch_scorer_stores_what_the_public_api_computes(
    case: tuple[ScoringInput, list[ViolationRow]], which: int, later: float
) -> None:
    row, violations = case
    policy = POLICIES[which]
    now = NOW + timedelta(seconds=later)
    batch = BatchScorer(policy).score([row], {DID: violations}, now)
    result = ScoreResult(*batch.results[0])
    stored, changed, events = reference(row, violations, now, policy)
    assert result.did == DID
    assert {k: getattr(result, k) for k in stored} == stored  # the breakdown byte for byte
    assert result.changed is changed
    assert [(t, d, json.loads(p)) for t, d, p in batch.events] == events
    assert [p for _, _, p in batch.events] == [json.dumps(p) for _, _, p in events]


def test_pausing_changes_nothing() -> None:
    policy = POLICIES[0]
    row = ScoringInput(
        DID, "active", 2, ago(86400), "kid", ago(3600), True, 500, "medium", 2, None, None,
        0.9, ago(60), "sre", None, None, "", None, None, "",
    )
    scorer = BatchScorer(policy)
    many = [row._replace(did=f"{DID}{i}") for i in range(2000)]
    assert scorer.score(many, {}, NOW, pause=True) == scorer.score(many, {}, NOW)
