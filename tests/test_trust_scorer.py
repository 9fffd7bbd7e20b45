"""TrustScorer: the AGT idiom over the real scoring."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from _trust_strategies import NOW

from trust import (
    AGT_FACTORS,
    AgentSignals,
    Policy,
    SignalError,
    TrustError,
    TrustScorer,
    UnknownFactorError,
    compute_score,
)

EXAMPLE = {
    "success_rate": 0.95,
    "error_budget_remaining": 0.8,
    "last_violation_age_hours": 72,
    "api_key_rotation_days_ago": 30,
    "audit_log_completeness": 1.0,
}


def test_agt_example_follows_the_documented_curves() -> None:
    d = 2 ** (-72 / 168)  # 72 h into a 7-day half-life
    violation = (1 - 0.5 * d) * (1 - 0.3 * d)  # clean record since, one medium violation
    expected = round(1000 * (0.25 * 0.9 + 0.2 * 0.8 + 0.2 * violation + 0.15 * 1 + 0.2 * 1))
    score = TrustScorer().compute("agent-1", factors=EXAMPLE, now=NOW)
    assert isinstance(score, int)
    assert score == expected


def test_full_score_has_the_breakdown() -> None:
    score = TrustScorer().compute_score("agent-1", EXAMPLE, now=NOW)
    assert score.value == TrustScorer().compute("agent-1", EXAMPLE, now=NOW)
    assert score.factor("credential_age").value == 1.0
    assert "TrustScorer" in score.factor("success_rate").why
    assert score.computed_at == NOW


def test_missing_factors_sit_at_the_prior() -> None:
    scorer = TrustScorer()
    assert scorer.compute("a", {}, now=NOW) == 500
    assert scorer.compute("a", None, now=NOW) == 500
    assert scorer.compute("a", {"success_rate": None}, now=NOW) == 500
    assert (
        scorer.compute("a", now=NOW) == compute_score(AgentSignals(), Policy.default(), NOW).value
    )


def test_unknown_factor_is_named() -> None:
    with pytest.raises(UnknownFactorError) as info:
        TrustScorer().compute("agent-7", {"succes_rate": 0.9}, now=NOW)
    text = str(info.value)
    assert "'succes_rate'" in text and "agent-7" in text and "did you mean 'success_rate'" in text
    assert all(name in text for name in AGT_FACTORS)


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("success_rate", 1.5, "must be in [0, 1]"),
        ("audit_log_completeness", -0.1, "must be in [0, 1]"),
        ("error_budget_remaining", float("nan"), "finite"),
        ("success_rate", True, "must be a number"),
        ("success_rate", "0.9", "must be a number"),
        ("last_violation_age_hours", -1, "must not be negative"),
        ("api_key_rotation_days_ago", -3, "must not be negative"),
        ("api_key_rotation_days_ago", float("inf"), "finite"),
    ],
)
def test_bad_values(name: str, value: object, fragment: str) -> None:
    with pytest.raises(SignalError) as info:
        TrustScorer().compute("a", {name: value}, now=NOW)  # type: ignore[dict-item]
    assert fragment in str(info.value) and name in str(info.value)


def test_never_violated_and_extreme_ages() -> None:
    scorer = TrustScorer()
    never = scorer.compute_score("a", {"last_violation_age_hours": float("inf")}, now=NOW)
    assert never.factor("violation_recency").value == 1.0
    ancient = scorer.compute_score("a", {"api_key_rotation_days_ago": 1e30}, now=NOW)
    assert ancient.factor("credential_age").value == 0.0
    fresh = scorer.compute_score("a", {"last_violation_age_hours": 0}, now=NOW)
    assert fresh.factor("violation_recency").value == pytest.approx(0.5 * 0.7)


def test_older_violation_and_fresher_key_score_higher() -> None:
    s = TrustScorer()
    assert s.compute("a", {"last_violation_age_hours": 1}, now=NOW) < s.compute(
        "a", {"last_violation_age_hours": 500}, now=NOW
    )
    assert s.compute("a", {"api_key_rotation_days_ago": 44}, now=NOW) < s.compute(
        "a", {"api_key_rotation_days_ago": 31}, now=NOW
    )


def test_policy_and_clock_are_used() -> None:
    strict = Policy.from_mapping({"agt": {"violation_severity": "critical"}})
    assert (
        TrustScorer(strict)
        .compute_score("a", {"last_violation_age_hours": 0}, now=NOW)
        .factor("violation_recency")
        .value
        == 0.0
    )
    fixed = datetime(2030, 1, 1, tzinfo=UTC)
    assert TrustScorer(clock=lambda: fixed).compute_score("a", EXAMPLE).computed_at == fixed
    real = TrustScorer().compute_score("a", EXAMPLE)
    assert abs(real.computed_at - datetime.now(UTC)) < timedelta(minutes=5)


def test_bad_arguments() -> None:
    with pytest.raises(TrustError, match="agent_id"):
        TrustScorer().compute("", EXAMPLE, now=NOW)
    with pytest.raises(TrustError, match="mapping"):
        TrustScorer().compute("a", [("success_rate", 1.0)], now=NOW)  # type: ignore[arg-type]
    with pytest.raises(TrustError, match="Policy"):
        TrustScorer({"weights": {}})  # type: ignore[arg-type]
    with pytest.raises(TrustError, match="timezone-aware"):
        TrustScorer().compute("a", EXAMPLE, now=datetime(2026, 1, 1))
