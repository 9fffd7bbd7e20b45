"""``TrustScorer``: the Agent Governance Toolkit idiom, backed by the real scoring.

    TrustScorer().compute("agent-1", factors={
        "success_rate": 0.95,              # fraction, 0..1
        "error_budget_remaining": 0.8,     # fraction, 0..1
        "last_violation_age_hours": 72,    # hours since the last violation (inf: never)
        "api_key_rotation_days_ago": 30,   # days since the key was made or rotated
        "audit_log_completeness": 1.0,     # fraction, 0..1
    })  # -> int in 0..1000

Each factor becomes the matching signal observed at ``now`` (source
``TrustScorer``) and goes through :func:`trust.compute_score`, so the same curves,
weights and policy apply. ``last_violation_age_hours = h`` means one violation
of severity ``agt.violation_severity`` (policy) ``h`` hours ago and a clean record
since then. A missing factor (or ``None``) sits at its prior; an unknown name
raises :class:`trust.errors.UnknownFactorError`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from trust.errors import SignalError, TrustError, UnknownFactorError
from trust.policy import Policy
from trust.score import Score, compute_score
from trust.signals import (
    AgentSignals,
    AuditCompleteness,
    CredentialAge,
    ErrorBudget,
    SuccessRate,
    Violation,
)

AGT_FACTORS: tuple[str, ...] = (
    "success_rate",
    "error_budget_remaining",
    "last_violation_age_hours",
    "api_key_rotation_days_ago",
    "audit_log_completeness",
)
_SOURCE = "TrustScorer"
_EARLIEST = datetime.min.replace(tzinfo=UTC)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _ago(now: datetime, seconds: float) -> datetime:
    """``now - seconds``, saturating at the earliest representable time."""
    try:
        return now - timedelta(seconds=seconds)
    except OverflowError:
        return _EARLIEST


class TrustScorer:
    """Score agents from AGT-style factor dictionaries. Stateless apart from its policy."""

    def __init__(
        self, policy: Policy | None = None, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        if policy is not None and not isinstance(policy, Policy):
            raise TrustError(
                f"policy must be a trust Policy, got {type(policy).__name__}",
                hint="use Policy.load(path) or Policy.from_mapping(...)",
            )
        self._policy = policy if policy is not None else Policy.default()
        self._clock = clock or _utcnow

    @property
    def policy(self) -> Policy:
        return self._policy

    def compute(
        self,
        agent_id: str,
        factors: Mapping[str, float | int | None] | None = None,
        *,
        now: datetime | None = None,
    ) -> int:
        """The agent's score, 0..1000."""
        return self.compute_score(agent_id, factors, now=now).value

    def compute_score(
        self,
        agent_id: str,
        factors: Mapping[str, float | int | None] | None = None,
        *,
        now: datetime | None = None,
    ) -> Score:
        """The full :class:`trust.Score` with its per-factor breakdown."""
        when = self._clock() if now is None else now
        return compute_score(self.signals(agent_id, factors, now=when), self._policy, when)

    def signals(
        self,
        agent_id: str,
        factors: Mapping[str, float | int | None] | None,
        *,
        now: datetime,
    ) -> AgentSignals:
        """The :class:`trust.AgentSignals` an AGT factor dictionary stands for at ``now``."""
        if not isinstance(agent_id, str) or not agent_id.strip():
            raise TrustError("agent_id must be a non-empty string")
        if not isinstance(now, datetime) or now.tzinfo is None:
            raise TrustError("now must be a timezone-aware datetime")
        given: Mapping[str, float | int | None] = {} if factors is None else factors
        if not isinstance(given, Mapping):
            raise TrustError(
                f"factors for {agent_id[:80]!r} must be a mapping, got {type(given).__name__}"
            )
        for name in given:
            if name not in AGT_FACTORS:
                shown = str(name)[:60]
                close = difflib.get_close_matches(shown, AGT_FACTORS, n=1)
                raise UnknownFactorError(
                    f"unknown trust factor {shown!r} for agent {agent_id[:80]!r}"
                    + (f" (did you mean {close[0]!r}?)" if close else ""),
                    hint="known factors: " + ", ".join(AGT_FACTORS),
                )
        values = {k: _number(agent_id, k, v) for k, v in given.items() if v is not None}

        def fraction(name: str) -> float | None:
            value = values.get(name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise SignalError(
                    f"factor {name!r} for agent {agent_id[:80]!r} must be in [0, 1], got {value!r}"
                )
            return value

        def age(name: str) -> float | None:
            value = values.get(name)
            if value is not None and value < 0.0:
                raise SignalError(
                    f"factor {name!r} for agent {agent_id[:80]!r} must not be negative, "
                    f"got {value!r}"
                )
            return value

        sr = fraction("success_rate")
        eb = fraction("error_budget_remaining")
        au = fraction("audit_log_completeness")
        violation_h = age("last_violation_age_hours")
        rotation_d = age("api_key_rotation_days_ago")
        if rotation_d is not None and math.isinf(rotation_d):
            raise SignalError(
                f"factor 'api_key_rotation_days_ago' for agent {agent_id[:80]!r} must be finite"
            )

        violations: tuple[Violation, ...] = ()
        observed_since: datetime | None = None
        if violation_h is not None:
            if math.isinf(violation_h):
                observed_since = _EARLIEST  # never violated: a full clean record
            else:
                at = _ago(now, violation_h * 3600.0)
                observed_since = at
                violations = (
                    Violation(
                        self._policy.agt.violation_severity,
                        at,
                        "last violation (last_violation_age_hours)",
                        _SOURCE,
                    ),
                )
        return AgentSignals(
            success_rate=None if sr is None else SuccessRate(sr, now, _SOURCE),
            error_budget_remaining=None if eb is None else ErrorBudget(eb, now, _SOURCE),
            violations=violations,
            credential=(
                None
                if rotation_d is None
                else CredentialAge(_ago(now, rotation_d * 86400.0), _SOURCE)
            ),
            audit_log_completeness=None if au is None else AuditCompleteness(au, now, _SOURCE),
            observed_since=observed_since,
        )


def _number(agent_id: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SignalError(
            f"factor {name!r} for agent {agent_id[:80]!r} must be a number, "
            f"got {type(value).__name__}"
        )
    number = float(value)
    if math.isnan(number) or (math.isinf(number) and name != "last_violation_age_hours"):
        raise SignalError(
            f"factor {name!r} for agent {agent_id[:80]!r} must be a finite number, got {value!r}"
        )
    return number
