"""Stored inputs -> ``trust.AgentSignals`` (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from registry.store.repos.trust import AgentInputs, ViolationRow
from trust import (
    AgentSignals,
    AuditCompleteness,
    CredentialAge,
    ErrorBudget,
    Severity,
    SuccessRate,
    Violation,
)

REGISTRY_SOURCE = "registry"


def to_signals(agent: AgentInputs, violations: Sequence[ViolationRow]) -> AgentSignals:
    state = agent.state
    sr = eb = au = None
    if state is not None:
        if state.success_rate is not None:
            value, at, by = state.success_rate
            sr = SuccessRate(value, at, by or "unknown")
        if state.error_budget is not None:
            value, at, by = state.error_budget
            eb = ErrorBudget(value, at, by or "unknown")
        if state.audit_completeness is not None:
            value, at, by = state.audit_completeness
            au = AuditCompleteness(value, at, by or "unknown")
    return AgentSignals(
        success_rate=sr,
        error_budget_remaining=eb,
        violations=tuple(
            Violation(Severity(v.severity), v.occurred_at, v.reason, v.reporter or "unknown")
            for v in violations
        ),
        credential=(
            CredentialAge(agent.key_valid_from, REGISTRY_SOURCE)
            if agent.key_valid_from is not None
            else None
        ),
        audit_log_completeness=au,
        observed_since=agent.created_at,
        terminated=agent.status != "active",
    )


def json_inputs(inputs: tuple[tuple[str, object], ...]) -> dict[str, Any]:
    """A factor's (name, value) inputs as a JSON-safe object."""
    out: dict[str, Any] = {}
    for name, value in inputs:
        out[name] = _plain(value)
    return out


def _plain(value: object) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)
