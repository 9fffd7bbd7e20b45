"""Stored inputs -> ``trust.AgentSignals``, and factor inputs as JSON (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from registry.store.repos.trust import ScoringInput, ScoringRow, ViolationRow
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


def to_signals(stored: ScoringRow, violations: Sequence[ViolationRow]) -> AgentSignals:
    """The ``trust`` signals of one stored agent (the recompute itself goes straight
    from the row to the scoring kernel; this is the same reading, as objects)."""
    row = ScoringInput(*stored)
    sr = eb = au = None
    if row.success_rate is not None and row.success_rate_at is not None:
        sr = SuccessRate(row.success_rate, row.success_rate_at, row.success_rate_by or "unknown")
    if row.error_budget is not None and row.error_budget_at is not None:
        eb = ErrorBudget(row.error_budget, row.error_budget_at, row.error_budget_by or "unknown")
    if row.audit_completeness is not None and row.audit_completeness_at is not None:
        au = AuditCompleteness(
            row.audit_completeness,
            row.audit_completeness_at,
            row.audit_completeness_by or "unknown",
        )
    return AgentSignals(
        success_rate=sr,
        error_budget_remaining=eb,
        violations=tuple(
            Violation(Severity(v.severity), v.occurred_at, v.reason, v.reporter or "unknown")
            for v in violations
        ),
        credential=(
            CredentialAge(row.key_valid_from, REGISTRY_SOURCE)
            if row.key_valid_from is not None
            else None
        ),
        audit_log_completeness=au,
        observed_since=row.created_at,
        terminated=row.status != "active",
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
