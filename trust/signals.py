"""Trust inputs ("signals") for one agent: typed, timestamped, each with its source.

Every timestamp must be timezone-aware; ``source`` names the reporter (a DID, a
SPIFFE ID or a component name such as ``registry``) so a score's breakdown can
say where each number came from. Construction validates everything and raises
:class:`trust.errors.SignalError` with a precise message; a constructed signal is
always usable by the scoring functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from trust.errors import SignalError


class Severity(Enum):
    """How serious a policy violation is; its weight comes from the policy."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    def __str__(self) -> str:
        return self.value


SEVERITIES: tuple[Severity, ...] = tuple(Severity)


def _check_time(value: object, field: str, owner: str) -> None:
    if not isinstance(value, datetime):
        raise SignalError(f"{owner}.{field} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise SignalError(
            f"{owner}.{field} is a naive datetime",
            hint="use a timezone-aware time, e.g. datetime.now(timezone.utc)",
        )


def _check_fraction(value: object, field: str, owner: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SignalError(f"{owner}.{field} must be a number in [0, 1], got {type(value).__name__}")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise SignalError(f"{owner}.{field} must be in [0, 1], got {value!r}")


def _check_source(value: object, owner: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise SignalError(
            f"{owner}.source must be a non-empty string naming the reporter",
            hint="e.g. the reporter's DID or 'registry'",
        )


@dataclass(frozen=True, slots=True)
class SuccessRate:
    """Fraction of the agent's operations that succeeded over the reporter's window, 0..1."""

    value: float
    observed_at: datetime
    source: str

    def __post_init__(self) -> None:
        _check_fraction(self.value, "value", "SuccessRate")
        _check_time(self.observed_at, "observed_at", "SuccessRate")
        _check_source(self.source, "SuccessRate")


@dataclass(frozen=True, slots=True)
class ErrorBudget:
    """Fraction of the agent's SLO error budget still remaining, 0..1."""

    remaining: float
    observed_at: datetime
    source: str

    def __post_init__(self) -> None:
        _check_fraction(self.remaining, "remaining", "ErrorBudget")
        _check_time(self.observed_at, "observed_at", "ErrorBudget")
        _check_source(self.source, "ErrorBudget")


@dataclass(frozen=True, slots=True)
class AuditCompleteness:
    """Fraction of the agent's actions that reached the audit log, 0..1."""

    value: float
    observed_at: datetime
    source: str

    def __post_init__(self) -> None:
        _check_fraction(self.value, "value", "AuditCompleteness")
        _check_time(self.observed_at, "observed_at", "AuditCompleteness")
        _check_source(self.source, "AuditCompleteness")


@dataclass(frozen=True, slots=True)
class Violation:
    """One policy violation: how serious, when it happened, why, and who reported it."""

    severity: Severity
    occurred_at: datetime
    reason: str
    source: str

    def __post_init__(self) -> None:
        if isinstance(self.severity, str) and not isinstance(self.severity, Severity):
            try:
                object.__setattr__(self, "severity", Severity(self.severity.lower()))
            except ValueError:
                raise SignalError(
                    f"Violation.severity {self.severity[:40]!r} is not a severity",
                    hint="use one of: " + ", ".join(s.value for s in Severity),
                ) from None
        if not isinstance(self.severity, Severity):
            raise SignalError(
                f"Violation.severity must be a Severity, got {type(self.severity).__name__}"
            )
        _check_time(self.occurred_at, "occurred_at", "Violation")
        if not isinstance(self.reason, str):
            raise SignalError(
                f"Violation.reason must be a string, got {type(self.reason).__name__}"
            )
        _check_source(self.source, "Violation")


@dataclass(frozen=True, slots=True)
class CredentialAge:
    """When the agent's current key was made or last rotated (the registry knows this)."""

    rotated_at: datetime
    source: str = "registry"

    def __post_init__(self) -> None:
        _check_time(self.rotated_at, "rotated_at", "CredentialAge")
        _check_source(self.source, "CredentialAge")

    def age_days(self, now: datetime) -> float:
        """Days since the key was made or rotated at ``now`` (never negative)."""
        return max(0.0, (now - self.rotated_at).total_seconds() / 86400.0)


@dataclass(frozen=True, slots=True)
class AgentSignals:
    """Everything the score of one agent is computed from.

    A missing input (``None`` / no violations) is not an error: that factor sits
    at its prior. ``observed_since`` is when reporting on this agent began
    (normally its registration); the clean-record part of the violation factor
    grows from it. ``terminated`` marks a terminated or revoked agent: its score
    is pinned to 0 and its ring to the sandbox, every call denied.
    """

    success_rate: SuccessRate | None = None
    error_budget_remaining: ErrorBudget | None = None
    violations: tuple[Violation, ...] = ()
    credential: CredentialAge | None = None
    audit_log_completeness: AuditCompleteness | None = None
    observed_since: datetime | None = None
    terminated: bool = False

    def __post_init__(self) -> None:
        _expect(self.success_rate, SuccessRate, "success_rate")
        _expect(self.error_budget_remaining, ErrorBudget, "error_budget_remaining")
        _expect(self.credential, CredentialAge, "credential")
        _expect(self.audit_log_completeness, AuditCompleteness, "audit_log_completeness")
        violations: object = self.violations
        if isinstance(violations, list):
            violations = tuple(violations)
            object.__setattr__(self, "violations", violations)
        if not isinstance(violations, tuple) or not all(
            isinstance(v, Violation) for v in violations
        ):
            raise SignalError("AgentSignals.violations must be a sequence of Violation")
        if self.observed_since is not None:
            _check_time(self.observed_since, "observed_since", "AgentSignals")
        if not isinstance(self.terminated, bool):
            raise SignalError(
                f"AgentSignals.terminated must be a bool, got {type(self.terminated).__name__}"
            )


def _expect(value: object, kind: type, field: str) -> None:
    if value is not None and not isinstance(value, kind):
        raise SignalError(
            f"AgentSignals.{field} must be a {kind.__name__} or None, got {type(value).__name__}"
        )
