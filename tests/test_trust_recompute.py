"""next_recompute_due: when time alone may have moved a score enough to recompute."""

from __future__ import annotations

import dataclasses
import math
from datetime import timedelta

import pytest
from _trust_strategies import NOW, signals
from hypothesis import given, settings

from trust import (
    AgentSignals,
    CredentialAge,
    Policy,
    SuccessRate,
    compute_score,
    next_recompute_due,
    score_and_due,
    tier_for,
)

P = Policy.default()
EXACT = Policy.from_mapping({"recompute": {"min_interval": 0}})


def test_nothing_time_dependent_means_never() -> None:
    assert next_recompute_due(AgentSignals(), P, NOW) is None
    old_key = AgentSignals(credential=CredentialAge(NOW - timedelta(days=400)))
    assert next_recompute_due(old_key, P, NOW) is None
    terminated = AgentSignals(success_rate=SuccessRate(1.0, NOW, "slo"), terminated=True)
    assert next_recompute_due(terminated, P, NOW) is None


def test_single_fading_report_matches_the_formula() -> None:
    s = AgentSignals(success_rate=SuccessRate(0.9, NOW, "slo"))
    assert compute_score(s, P, NOW).value == 575  # 1000 * (0.25 * 0.8 + 0.75 * 0.5)
    due = next_recompute_due(s, P, NOW)
    assert due is not None
    # 75 points to fade with a 24 h half-life; 5 points (the tolerance) are gone after:
    expected = -86400 * math.log2(1 - 5 / 75)
    assert (due - NOW).total_seconds() == pytest.approx(expected, abs=1e-3)
    assert compute_score(s, P, due).raw == pytest.approx(570.0, abs=1e-3)


def test_nearby_tier_boundary_brings_the_recompute_forward() -> None:
    # 1000 * (0.25 * 0.9 + 0.375) = 600: 0.5 point above the 599.5 tier edge.
    s = AgentSignals(success_rate=SuccessRate(0.95, NOW, "slo"))
    due = next_recompute_due(s, EXACT, NOW)
    assert due is not None
    expected = -86400 * math.log2(1 - 0.5 / 100)
    assert (due - NOW).total_seconds() == pytest.approx(expected, abs=1e-3)
    assert compute_score(s, P, due - timedelta(seconds=1)).value == 600
    assert compute_score(s, P, due + timedelta(seconds=5)).value == 599


def test_min_interval_is_a_floor() -> None:
    s = AgentSignals(success_rate=SuccessRate(0.95, NOW, "slo"))
    computed = next_recompute_due(s, EXACT, NOW)
    assert computed is not None and computed - NOW < timedelta(minutes=11)
    hourly = Policy.from_mapping({"recompute": {"min_interval": "1h"}})
    assert next_recompute_due(s, hourly, NOW) == NOW + timedelta(hours=1)


def test_credential_due_once_past_the_soft_limit() -> None:
    s = AgentSignals(credential=CredentialAge(NOW))
    due = next_recompute_due(s, P, NOW)
    # 150 points over 15 days = 10 points/day; 5 points half a day past 30 days.
    assert due == NOW + timedelta(days=30.5)


@settings(max_examples=300, deadline=None)
@given(signals)
def test_score_stays_within_tolerance_and_tier_until_due(s: AgentSignals) -> None:
    s = dataclasses.replace(s, terminated=False)
    tolerance = EXACT.recompute.tolerance_points
    start = compute_score(s, EXACT, NOW)
    due = next_recompute_due(s, EXACT, NOW)
    if due is None:
        probes = [NOW + timedelta(days=d) for d in (0.01, 1, 30, 365, 3650)]
    else:
        assert due >= NOW
        span = due - NOW
        probes = [NOW + span * f for f in (0.1, 0.5, 0.9, 0.999)]
    for t in probes:
        later = compute_score(s, EXACT, t)
        assert abs(later.raw - start.raw) <= tolerance + 1e-6
        assert tier_for(later.value) is start.tier


@settings(max_examples=300, deadline=None)
@given(signals)
def test_score_and_due_is_compute_score_and_next_recompute_due_in_one_pass(
    s: AgentSignals,
) -> None:
    for policy in (P, EXACT):
        score, due = score_and_due(s, policy, NOW)
        assert score == compute_score(s, policy, NOW)
        assert due == next_recompute_due(s, policy, NOW)
