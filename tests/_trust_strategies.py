"""Hypothesis strategies shared by the trust tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from trust import (
    AgentSignals,
    AuditCompleteness,
    CredentialAge,
    ErrorBudget,
    Severity,
    SuccessRate,
    Violation,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

fractions = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
# Ages from "in the future" (clock skew) to a few years old, in seconds.
ages = st.floats(min_value=-3600.0, max_value=3 * 365 * 86400.0, allow_nan=False)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


violations = st.builds(
    lambda sev, age: Violation(sev, ago(age), "test", "reporter"),
    st.sampled_from(list(Severity)),
    ages,
)

signals = st.builds(
    AgentSignals,
    success_rate=st.none() | st.builds(lambda v, a: SuccessRate(v, ago(a), "r"), fractions, ages),
    error_budget_remaining=st.none()
    | st.builds(lambda v, a: ErrorBudget(v, ago(a), "r"), fractions, ages),
    violations=st.lists(violations, max_size=5).map(tuple),
    credential=st.none() | st.builds(lambda a: CredentialAge(ago(a)), ages),
    audit_log_completeness=st.none()
    | st.builds(lambda v, a: AuditCompleteness(v, ago(a), "r"), fractions, ages),
    observed_since=st.none() | ages.map(ago),
    terminated=st.booleans(),
)
