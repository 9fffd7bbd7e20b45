"""The 0-1000 score: tiers, breakdown, explanation, range and monotonicity."""

from __future__ import annotations

import dataclasses
import itertools
import json
from datetime import timedelta

import pytest
from _trust_strategies import NOW, ages, ago, fractions, signals
from hypothesis import given, settings
from hypothesis import strategies as st

from trust import (
    AgentSignals,
    AuditCompleteness,
    CredentialAge,
    ErrorBudget,
    Policy,
    Severity,
    SuccessRate,
    Tier,
    TrustError,
    Violation,
    compute_score,
    tier_for,
)

P = Policy.default()


@pytest.mark.parametrize(
    ("score", "tier"),
    [
        (0, Tier.UNTRUSTED),
        (199, Tier.UNTRUSTED),
        (200, Tier.LOW),
        (399, Tier.LOW),
        (400, Tier.MEDIUM),
        (599, Tier.MEDIUM),
        (600, Tier.HIGH),
        (799, Tier.HIGH),
        (800, Tier.MAXIMUM),
        (1000, Tier.MAXIMUM),
    ],
)
def test_tier_table(score: int, tier: Tier) -> None:
    assert tier_for(score) is tier
    assert tier.lower <= score <= tier.upper


@pytest.mark.parametrize("bad", [-1, 1001, 10**9, 500.0, True, "500", None])
def test_tier_for_rejects_bad_scores(bad: object) -> None:
    with pytest.raises(TrustError):
        tier_for(bad)  # type: ignore[arg-type]


def test_tier_bounds_cover_0_to_1000_without_gaps() -> None:
    tiers = list(Tier)
    assert tiers[0].lower == 0 and tiers[-1].upper == 1000
    for lower, upper in itertools.pairwise(tiers):
        assert upper.lower == lower.upper + 1
        assert upper.rank == lower.rank + 1


def test_no_input_sits_at_the_prior() -> None:
    score = compute_score(AgentSignals(), P, NOW)
    assert score.value == 500
    assert score.tier is Tier.MEDIUM
    assert {f.name for f in score.factors} == {
        "success_rate",
        "error_budget_remaining",
        "violation_recency",
        "credential_age",
        "audit_log_completeness",
    }


def _perfect() -> AgentSignals:
    return AgentSignals(
        success_rate=SuccessRate(1.0, NOW, "slo"),
        error_budget_remaining=ErrorBudget(1.0, NOW, "slo"),
        credential=CredentialAge(NOW - timedelta(days=1)),
        audit_log_completeness=AuditCompleteness(1.0, NOW, "audit"),
        observed_since=NOW - timedelta(days=3650),
    )


def test_perfect_agent_scores_1000_and_critical_violation_costs_its_weight() -> None:
    assert compute_score(_perfect(), P, NOW).value == 1000
    bad = dataclasses.replace(
        _perfect(), violations=(Violation(Severity.CRITICAL, NOW, "exfiltration", "gw"),)
    )
    score = compute_score(bad, P, NOW)
    assert score.value == 800  # violation_recency weight 0.2 lost entirely
    assert score.factor("violation_recency").value == 0.0
    assert score.factor("violation_recency").contribution == 0.0


def test_breakdown_sums_to_the_score() -> None:
    s = AgentSignals(
        success_rate=SuccessRate(0.8, ago(3600), "slo"),
        error_budget_remaining=ErrorBudget(0.3, ago(7200), "slo"),
        violations=(Violation(Severity.HIGH, ago(86400), "denied tool call", "gateway"),),
        credential=CredentialAge(ago(40 * 86400)),
        audit_log_completeness=AuditCompleteness(0.95, ago(60), "audit"),
        observed_since=ago(20 * 86400),
    )
    score = compute_score(s, P, NOW)
    assert score.value == round(score.raw)
    assert sum(f.weight for f in score.factors) == pytest.approx(1.0)
    for f in score.factors:
        assert f.contribution == pytest.approx(1000 * f.weight * f.value)
    assert score.computed_at == NOW
    inputs = dict(score.factor("violation_recency").inputs)
    assert inputs["violations"] == 1 and inputs["heaviest"][2] == "denied tool call"
    assert dict(score.factor("success_rate").inputs)["source"] == "slo"
    data = json.loads(json.dumps(score.as_dict()))
    assert data["value"] == score.value and data["tier"] == score.tier.value
    assert [f["name"] for f in data["factors"]] == [f.name for f in score.factors]
    assert data["factors"][0]["why"] == score.factors[0].why


def test_explain_answers_why() -> None:
    s = AgentSignals(
        violations=(Violation(Severity.HIGH, ago(3600), "denied tool call", "gateway"),),
        credential=CredentialAge(ago(44 * 86400)),
    )
    score = compute_score(s, P, NOW)
    lines = score.explain()
    assert lines[0].startswith(f"score {score.value} ({score.tier.value})")
    text = "\n".join(lines)
    assert "denied tool call" in text
    assert "44.0d ago" in text
    assert len(lines) == 1 + len(score.factors)


def test_terminated_agent_is_pinned_to_zero_with_its_breakdown() -> None:
    score = compute_score(dataclasses.replace(_perfect(), terminated=True), P, NOW)
    assert score.value == 0
    assert score.tier is Tier.UNTRUSTED
    assert score.pinned and "terminated" in score.pinned
    assert any("terminated" in line for line in score.explain())
    assert score.factor("success_rate").value == 1.0


def test_weights_are_normalised() -> None:
    doubled = Policy.from_mapping(
        {"weights": {k: 2 * v for k, v in P.to_mapping()["weights"].items()}}
    )
    s = _perfect()
    assert compute_score(s, doubled, NOW).value == compute_score(s, P, NOW).value
    only_sr = Policy.from_mapping(
        {
            "weights": {
                "success_rate": 3,
                "error_budget_remaining": 0,
                "violation_recency": 0,
                "credential_age": 0,
                "audit_log_completeness": 0,
            }
        }
    )
    half = AgentSignals(success_rate=SuccessRate(0.75, NOW, "slo"))
    assert compute_score(half, only_sr, NOW).value == 500


def test_compute_score_rejects_bad_arguments() -> None:
    with pytest.raises(TrustError, match="timezone-aware"):
        compute_score(AgentSignals(), P, NOW.replace(tzinfo=None))
    with pytest.raises(TrustError, match="AgentSignals"):
        compute_score({}, P, NOW)  # type: ignore[arg-type]
    with pytest.raises(TrustError, match="Policy"):
        compute_score(AgentSignals(), {}, NOW)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(signals)
def test_score_always_in_range(s: AgentSignals) -> None:
    score = compute_score(s, P, NOW)
    assert 0 <= score.value <= 1000
    assert score.tier is tier_for(score.value)
    for f in score.factors:
        assert 0.0 <= f.value <= 1.0


# A policy with random weights and curves, to check the properties beyond the defaults.
random_policies = st.builds(
    lambda w, prior, soft, extra, floor, margin: Policy.from_mapping(
        {
            "weights": dict(
                zip(
                    (
                        "success_rate",
                        "error_budget_remaining",
                        "violation_recency",
                        "credential_age",
                        "audit_log_completeness",
                    ),
                    w,
                    strict=True,
                )
            ),
            "factors": {
                "success_rate": {"prior": prior},
                "violation_recency": {"clean_record_prior": prior},
                "credential_age": {
                    "soft_limit": soft,
                    "hard_limit": soft + extra,
                    "floor": floor,
                },
            },
            "rings": {"promotion_margin": margin},
        }
    ),
    st.lists(st.floats(0.01, 10), min_size=5, max_size=5),
    fractions,
    st.integers(0, 60 * 86400),
    st.integers(1, 60 * 86400),
    fractions,
    st.integers(0, 199),
)


@settings(max_examples=200, deadline=None)
@given(signals, random_policies)
def test_score_in_range_under_any_policy(s: AgentSignals, policy: Policy) -> None:
    assert 0 <= compute_score(s, policy, NOW).value <= 1000


def _value(s: AgentSignals, policy: Policy = P) -> int:
    return compute_score(s, policy, NOW).value


@settings(max_examples=200, deadline=None)
@given(signals, fractions, fractions, ages, random_policies)
def test_monotone_in_good_factors(
    s: AgentSignals, a: float, b: float, age: float, policy: Policy
) -> None:
    lo, hi = min(a, b), max(a, b)
    s = dataclasses.replace(s, terminated=False)
    for field, make in (
        ("success_rate", lambda v: SuccessRate(v, ago(age), "r")),
        ("error_budget_remaining", lambda v: ErrorBudget(v, ago(age), "r")),
        ("audit_log_completeness", lambda v: AuditCompleteness(v, ago(age), "r")),
    ):
        low = dataclasses.replace(s, **{field: make(lo)})
        high = dataclasses.replace(s, **{field: make(hi)})
        assert _value(low, policy) <= _value(high, policy), field


@settings(max_examples=200, deadline=None)
@given(signals, st.sampled_from(list(Severity)), ages, random_policies)
def test_non_increasing_when_a_violation_is_added(
    s: AgentSignals, severity: Severity, age: float, policy: Policy
) -> None:
    s = dataclasses.replace(s, terminated=False)
    worse = dataclasses.replace(
        s, violations=(*s.violations, Violation(severity, ago(age), "x", "r"))
    )
    assert _value(worse, policy) <= _value(s, policy)


@settings(max_examples=200, deadline=None)
@given(signals, st.sampled_from(list(Severity)), ages, ages, random_policies)
def test_non_increasing_in_violation_recency_and_severity(
    s: AgentSignals, severity: Severity, a: float, b: float, policy: Policy
) -> None:
    s = dataclasses.replace(s, terminated=False)
    older, newer = max(a, b), min(a, b)

    def with_v(sev: Severity, age: float) -> int:
        return _value(
            dataclasses.replace(s, violations=(*s.violations, Violation(sev, ago(age), "x", "r"))),
            policy,
        )

    assert with_v(severity, newer) <= with_v(severity, older)
    assert with_v(Severity.CRITICAL, newer) <= with_v(severity, newer)
    assert with_v(severity, newer) <= with_v(Severity.LOW, newer)


@settings(max_examples=200, deadline=None)
@given(signals, ages, ages, random_policies)
def test_non_increasing_in_credential_age(
    s: AgentSignals, a: float, b: float, policy: Policy
) -> None:
    s = dataclasses.replace(s, terminated=False)
    young = dataclasses.replace(s, credential=CredentialAge(ago(min(a, b))))
    old = dataclasses.replace(s, credential=CredentialAge(ago(max(a, b))))
    assert _value(old, policy) <= _value(young, policy)


@settings(max_examples=100, deadline=None)
@given(signals, ages, ages)
def test_clean_record_only_grows(s: AgentSignals, a: float, b: float) -> None:
    s = dataclasses.replace(s, terminated=False)
    short = dataclasses.replace(s, observed_since=ago(min(a, b)))
    long = dataclasses.replace(s, observed_since=ago(max(a, b)))
    assert _value(short) <= _value(long)
