"""Factor curves: tables of expected values for each documented formula."""

from __future__ import annotations

from datetime import timedelta

import pytest
from _trust_strategies import NOW, ago

from trust import (
    AgentSignals,
    AuditCompleteness,
    CredentialAge,
    ErrorBudget,
    Policy,
    Severity,
    SuccessRate,
    Violation,
    compute_factors,
)
from trust.factors import credential_factor, decay, fade, ramp, violation_factor

DAY = 86400.0
HOUR = 3600.0
P = Policy.default()


@pytest.mark.parametrize(
    ("age", "half_life", "expected"),
    [
        (0.0, 10.0, 1.0),
        (-5.0, 10.0, 1.0),  # a timestamp in the future counts as age 0
        (10.0, 10.0, 0.5),
        (20.0, 10.0, 0.25),
        (30.0, 10.0, 0.125),
        (1e9, 10.0, 0.0),
    ],
)
def test_decay(age: float, half_life: float, expected: float) -> None:
    assert decay(age, half_life) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("value", "zero_at", "full_at", "expected"),
    [
        (0.0, 0.5, 1.0, 0.0),
        (0.5, 0.5, 1.0, 0.0),
        (0.75, 0.5, 1.0, 0.5),
        (0.95, 0.5, 1.0, 0.9),
        (1.0, 0.5, 1.0, 1.0),
        (0.3, 0.0, 1.0, 0.3),
        (0.9, 0.0, 0.8, 1.0),
    ],
)
def test_ramp(value: float, zero_at: float, full_at: float, expected: float) -> None:
    assert ramp(value, zero_at, full_at) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "prior", "age", "expected"),
    [
        (1.0, 0.5, 0.0, 1.0),  # fresh: counts fully
        (1.0, 0.5, 24 * HOUR, 0.75),  # one half-life: half value, half prior
        (0.0, 0.5, 24 * HOUR, 0.25),
        (1.0, 0.5, 48 * HOUR, 0.625),
        (0.2, 0.5, 1000 * DAY, 0.5),  # long silent: back at the prior
    ],
)
def test_fade(value: float, prior: float, age: float, expected: float) -> None:
    assert fade(value, prior, age, 24 * HOUR) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("age_days", "expected"),
    [
        (0, 1.0),
        (29, 1.0),
        (30, 1.0),
        (33, 0.8),
        (37.5, 0.5),
        (42, 0.2),
        (45, 0.0),
        (90, 0.0),
    ],
)
def test_credential_curve(age_days: float, expected: float) -> None:
    assert credential_factor(age_days * DAY, P) == pytest.approx(expected)


def test_credential_curve_floor() -> None:
    policy = Policy.from_mapping({"factors": {"credential_age": {"floor": 0.2}}})
    assert credential_factor(37.5 * DAY, policy) == pytest.approx(0.6)
    assert credential_factor(45 * DAY, policy) == 0.2
    assert credential_factor(400 * DAY, policy) == 0.2


def _v(sev: Severity, age_s: float) -> Violation:
    return Violation(sev, ago(age_s), "reason", "reporter")


WEEK = 7 * DAY


@pytest.mark.parametrize(
    ("violations", "observed_for", "expected"),
    [
        ((), None, 0.5),  # nothing known: the clean-record prior
        ((), 0.0, 0.5),
        ((), WEEK, 0.75),
        ((), 2 * WEEK, 0.875),
        ((), 100 * WEEK, 1.0),
        ((_v(Severity.CRITICAL, 0),), 100 * WEEK, 0.0),
        ((_v(Severity.MEDIUM, 0),), 100 * WEEK, 0.7),
        ((_v(Severity.MEDIUM, WEEK),), 100 * WEEK, 0.85),
        ((_v(Severity.HIGH, 2 * WEEK),), 100 * WEEK, 0.85),
        ((_v(Severity.LOW, 0),), 100 * WEEK, 0.9),
        ((_v(Severity.MEDIUM, 0), _v(Severity.MEDIUM, 0)), 100 * WEEK, 0.49),
        ((_v(Severity.MEDIUM, 0),), WEEK, 0.75 * 0.7),
        ((_v(Severity.CRITICAL, 100 * WEEK),), 100 * WEEK, 1.0),
    ],
)
def test_violation_curve(
    violations: tuple[Violation, ...], observed_for: float | None, expected: float
) -> None:
    signals = AgentSignals(
        violations=violations,
        observed_since=None if observed_for is None else ago(observed_for),
    )
    assert violation_factor(signals, P, NOW) == pytest.approx(expected, abs=1e-9)


def test_more_violations_never_help() -> None:
    base = (_v(Severity.HIGH, DAY),)
    one = AgentSignals(violations=base, observed_since=ago(30 * DAY))
    two = AgentSignals(violations=(*base, _v(Severity.LOW, 10 * DAY)), observed_since=ago(30 * DAY))
    assert violation_factor(two, P, NOW) < violation_factor(one, P, NOW)


def test_factors_without_input_sit_at_priors() -> None:
    values = {f.name: f.value for f in compute_factors(AgentSignals(), P, NOW)}
    assert values == {
        "success_rate": 0.5,
        "error_budget_remaining": 0.5,
        "violation_recency": 0.5,
        "credential_age": 0.5,
        "audit_log_completeness": 0.5,
    }


def test_fresh_inputs_count_fully_and_fade() -> None:
    fresh = AgentSignals(
        success_rate=SuccessRate(1.0, NOW, "slo"),
        error_budget_remaining=ErrorBudget(0.4, NOW, "slo"),
        audit_log_completeness=AuditCompleteness(0.9, NOW, "audit"),
        credential=CredentialAge(NOW - timedelta(days=2)),
    )
    values = {f.name: f.value for f in compute_factors(fresh, P, NOW)}
    assert values["success_rate"] == 1.0
    assert values["error_budget_remaining"] == pytest.approx(0.4)
    assert values["audit_log_completeness"] == pytest.approx(0.9)
    assert values["credential_age"] == 1.0
    later = NOW + timedelta(hours=24)
    values = {f.name: f.value for f in compute_factors(fresh, P, later)}
    assert values["success_rate"] == pytest.approx(0.75)
    assert values["error_budget_remaining"] == pytest.approx(0.45)
    # audit fades with its own 72 h half-life
    assert values["audit_log_completeness"] == pytest.approx(0.5 + 0.4 * 2 ** (-1 / 3))


def test_factor_why_names_the_source() -> None:
    signals = AgentSignals(success_rate=SuccessRate(0.9, ago(2 * HOUR), "did:mesh:reporter"))
    (sr, *_rest) = compute_factors(signals, P, NOW)
    assert "did:mesh:reporter" in sr.why
    assert "2.0h ago" in sr.why
