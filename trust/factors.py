"""Factors: each trust input turned into a number in [0, 1] by a documented curve.

All curves are pure functions of the inputs, the policy and ``now``. Ages are
``max(0, now - timestamp)`` (a timestamp in the future, i.e. clock skew, counts as
age 0). ``2 ** (-age / half_life)`` is written ``decay(age, half_life)``.

success_rate, error_budget_remaining, audit_log_completeness (fading inputs)::

    ramp(v)  = clamp((v - zero_at) / (full_at - zero_at), 0, 1)
    factor   = prior + (ramp(v) - prior) * decay(age, staleness_half_life)
    no input : factor = prior

  A fresh report counts fully; one half-life old it counts half and the other
  half is the neutral prior; a long-silent reporter leaves the agent at the prior.

violation_recency::

    p_i      = severity_weight(severity_i) * decay(age_i, half_life)     # each in [0, 1]
    clean    = 1 - (1 - clean_record_prior) * decay(observed_for, clean_record_half_life)
    factor   = clean * prod_i (1 - p_i)

  ``observed_for`` = ``now - observed_since`` (how long the registry has been
  watching this agent); unknown -> ``clean = clean_record_prior``. A new agent
  therefore starts at the prior and earns its way to 1 by staying clean. Several
  violations combine like independent risks: two fresh medium (0.3) violations
  give 0.49, one fresh critical (1.0) gives 0. Every violation fades away with
  ``half_life``. Adding a violation, or making one more recent or more severe,
  never raises the factor.

credential_age (age = days since the key was made or rotated)::

    age <= soft_limit               : 1
    soft_limit < age < hard_limit   : 1 - (1 - floor) * (age - soft) / (hard - soft)
    age >= hard_limit               : floor
    no input                        : prior

  Credential age is a fact the registry knows exactly, so it never goes stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from trust._internal.durations import human
from trust.policy import FACTOR_NAMES, FadingFactorPolicy, Policy
from trust.signals import AgentSignals, AuditCompleteness, ErrorBudget, SuccessRate

__all__ = [
    "FACTOR_NAMES",
    "FactorValue",
    "compute_factors",
    "credential_factor",
    "decay",
    "fade",
    "ramp",
    "violation_factor",
]


@dataclass(frozen=True, slots=True)
class FactorValue:
    """One factor's value in [0, 1] and a sentence saying which inputs made it."""

    name: str
    value: float
    why: str


def decay(age_s: float, half_life_s: float) -> float:
    """``2 ** (-age / half_life)`` for ``age >= 0`` (negative ages count as 0)."""
    if age_s <= 0.0:
        return 1.0
    return float(2.0 ** (-age_s / half_life_s))


def ramp(value: float, zero_at: float, full_at: float) -> float:
    """Linear ramp: 0 at or below ``zero_at``, 1 at or above ``full_at``."""
    if value <= zero_at:
        return 0.0
    if value >= full_at:
        return 1.0
    return (value - zero_at) / (full_at - zero_at)


def fade(value: float, prior: float, age_s: float, half_life_s: float) -> float:
    """Blend a value toward ``prior`` as it ages: ``prior + (value - prior) * decay``."""
    return prior + (value - prior) * decay(age_s, half_life_s)


def credential_factor(age_s: float, policy: Policy) -> float:
    """The credential-age curve (1, then linear down to ``floor`` between the limits)."""
    c = policy.credential_age
    soft = c.soft_limit.total_seconds()
    hard = c.hard_limit.total_seconds()
    if age_s <= soft:
        return 1.0
    if age_s >= hard:
        return c.floor
    # max() keeps the curve monotone where float rounding would dip below the floor.
    return max(c.floor, 1.0 - (1.0 - c.floor) * (age_s - soft) / (hard - soft))


def violation_factor(signals: AgentSignals, policy: Policy, now: datetime) -> float:
    """The violation-recency factor (see the module docstring)."""
    return _violations(signals, policy, now)[0]


def _fading(
    name: str,
    report: SuccessRate | ErrorBudget | AuditCompleteness | None,
    raw: float,
    fp: FadingFactorPolicy,
    now: datetime,
) -> FactorValue:
    if report is None:
        return FactorValue(name, fp.prior, f"no report: prior {fp.prior:.2f}")
    age = (now - report.observed_at).total_seconds()
    r = ramp(raw, fp.zero_at, fp.full_at)
    w = decay(age, fp.staleness_half_life.total_seconds())
    value = min(1.0, max(0.0, fp.prior + (r - fp.prior) * w))
    why = f"{raw:.3f} from {report.source} {human(max(0.0, age))} ago"
    if r != raw:
        why += f", ramp({fp.zero_at:g}..{fp.full_at:g}) -> {r:.3f}"
    if w < 1.0:
        why += f", {1.0 - w:.0%} faded toward prior {fp.prior:.2f}"
    return FactorValue(name, value, why)


def _violations(signals: AgentSignals, policy: Policy, now: datetime) -> tuple[float, str]:
    vp = policy.violation_recency
    if signals.observed_since is None:
        clean = vp.clean_record_prior
        why = f"clean record unknown: prior {clean:.2f}"
    else:
        observed = (now - signals.observed_since).total_seconds()
        clean = 1.0 - (1.0 - vp.clean_record_prior) * decay(
            observed, vp.clean_record_half_life.total_seconds()
        )
        why = f"observed {human(max(0.0, observed))}: clean record {clean:.2f}"
    value = clean
    if signals.violations:
        half_life = vp.half_life.total_seconds()
        weights = vp.severity_weights
        worst = ""
        worst_p = -1.0
        for v in signals.violations:
            age = (now - v.occurred_at).total_seconds()
            p = weights.of(v.severity) * decay(age, half_life)
            value *= 1.0 - p
            if p > worst_p:
                worst_p = p
                worst = f"{v.severity.value} {human(max(0.0, age))} ago ({v.reason[:60]!r})"
        n = len(signals.violations)
        why += f"; {n} violation{'s' if n != 1 else ''}, heaviest now {worst} -{worst_p:.2f}"
    else:
        why += "; no violations"
    return value, why


def _days(value: timedelta) -> str:
    return f"{value.total_seconds() / 86400:g}d"


def compute_factors(
    signals: AgentSignals, policy: Policy, now: datetime
) -> tuple[FactorValue, ...]:
    """All five factors, in :data:`FACTOR_NAMES` order."""
    sr = signals.success_rate
    eb = signals.error_budget_remaining
    au = signals.audit_log_completeness
    violation, violation_why = _violations(signals, policy, now)
    cred = signals.credential
    c = policy.credential_age
    if cred is None:
        credential = FactorValue(
            "credential_age", c.prior, f"credential age unknown: prior {c.prior:.2f}"
        )
    else:
        age = max(0.0, (now - cred.rotated_at).total_seconds())
        credential = FactorValue(
            "credential_age",
            credential_factor(age, policy),
            f"key made/rotated {age / 86400:.1f}d ago (soft limit {_days(c.soft_limit)}, "
            f"hard {_days(c.hard_limit)})",
        )
    return (
        _fading("success_rate", sr, sr.value if sr else 0.0, policy.success_rate, now),
        _fading(
            "error_budget_remaining",
            eb,
            eb.remaining if eb else 0.0,
            policy.error_budget_remaining,
            now,
        ),
        FactorValue("violation_recency", violation, violation_why),
        credential,
        _fading(
            "audit_log_completeness",
            au,
            au.value if au else 0.0,
            policy.audit_log_completeness,
            now,
        ),
    )
