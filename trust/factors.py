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

from datetime import datetime
from typing import Any, NamedTuple

from trust._internal.durations import human
from trust.kernel import Evaluation
from trust.policy import FACTOR_NAMES, FadingFactorPolicy, Policy
from trust.signals import AgentSignals, AuditCompleteness, ErrorBudget, SuccessRate

__all__ = [
    "FACTOR_NAMES",
    "FactorValue",
    "Inputs",
    "compute_factors",
    "credential_factor",
    "decay",
    "describe",
    "evaluate_signals",
    "factor_values",
    "fade",
    "ramp",
    "violation_factor",
]


Inputs = tuple[tuple[str, object], ...]
"""What fed a factor, as (name, value) pairs: machine-readable, rendered by :func:`describe`."""


class FactorValue(NamedTuple):
    """One factor's value in [0, 1] and the inputs that made it (``why`` renders them)."""

    name: str
    value: float
    inputs: Inputs

    @property
    def why(self) -> str:
        return describe(self.name, self.inputs)


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
    soft = c.soft_limit_s
    hard = c.hard_limit_s
    if age_s <= soft:
        return 1.0
    if age_s >= hard:
        return c.floor
    # max() keeps the curve monotone where float rounding would dip below the floor.
    return max(c.floor, 1.0 - (1.0 - c.floor) * (age_s - soft) / (hard - soft))


def violation_factor(signals: AgentSignals, policy: Policy, now: datetime) -> float:
    """The violation-recency factor (see the module docstring)."""
    return evaluate_signals(signals, policy, now).values[2]


def evaluate_signals(
    signals: AgentSignals, policy: Policy, now: datetime, *, due: bool = False
) -> Evaluation:
    """``signals`` at ``now`` through the policy's :class:`trust.kernel.ScoringKernel`
    (every curve above in one pass; with ``due``, the next due time too)."""
    kernel = policy.kernel
    sr = signals.success_rate
    eb = signals.error_budget_remaining
    au = signals.audit_log_completeness
    cred = signals.credential
    severity = kernel.severity_weights
    return kernel.evaluate(
        sr.value if sr is not None else None,
        (now - sr.observed_at).total_seconds() if sr is not None else 0.0,
        eb.remaining if eb is not None else None,
        (now - eb.observed_at).total_seconds() if eb is not None else 0.0,
        au.value if au is not None else None,
        (now - au.observed_at).total_seconds() if au is not None else 0.0,
        [
            (severity[v.severity.value], (now - v.occurred_at).total_seconds())
            for v in signals.violations
        ],
        None if signals.observed_since is None else (now - signals.observed_since).total_seconds(),
        None if cred is None else (now - cred.rotated_at).total_seconds(),
        signals.terminated,
        due,
    )


def describe(name: str, inputs: Inputs) -> str:
    """A sentence saying how a factor's inputs produced its value."""
    i: dict[str, Any] = dict(inputs)
    if name == "violation_recency":
        if i["observed_s"] is None:
            text = f"clean record unknown: prior {i['clean_prior']:.2f}"
        else:
            text = f"observed {human(i['observed_s'])}: clean record {i['clean']:.2f}"
        if i["heaviest"] is None:
            return text + "; no violations"
        n = i["violations"]
        severity, age, reason, p = i["heaviest"]
        return (
            f"{text}; {n} violation{'s' if n != 1 else ''}, heaviest now {severity} "
            f"{human(age)} ago ({reason[:60]!r}) -{p:.2f}"
        )
    if name == "credential_age":
        if "age_s" not in i:
            return f"credential age unknown: prior {i['prior']:.2f}"
        soft, hard = i["limits_s"]
        return (
            f"key made/rotated {i['age_s'] / 86400:.1f}d ago "
            f"(soft limit {soft / 86400:g}d, hard {hard / 86400:g}d)"
        )
    if "reported" not in i:
        return f"no report: prior {i['prior']:.2f}"
    raw = i["reported"]
    zero_at, full_at, ramped = i["ramp"]
    text = f"{raw:.3f} from {i['source']} {human(i['age_s'])} ago"
    if ramped != raw:
        text += f", ramp({zero_at:g}..{full_at:g}) -> {ramped:.3f}"
    if i["faded"] > 0.0:
        text += f", {i['faded']:.0%} faded toward prior {i['prior']:.2f}"
    return text


def compute_factors(
    signals: AgentSignals, policy: Policy, now: datetime
) -> tuple[FactorValue, ...]:
    """All five factors, in :data:`FACTOR_NAMES` order."""
    return factor_values(signals, policy, now, evaluate_signals(signals, policy, now))


def factor_values(
    signals: AgentSignals, policy: Policy, now: datetime, ev: Evaluation
) -> tuple[FactorValue, ...]:
    """The five factors of ``ev`` (an evaluation of ``signals`` at ``now``), each with
    the inputs that made it."""
    vp = policy.violation_recency
    observed: float | None = None
    if signals.observed_since is not None:
        observed = max(0.0, (now - signals.observed_since).total_seconds())
    heaviest: tuple[str, float, str, float] | None = None
    if ev.heaviest >= 0:
        v = signals.violations[ev.heaviest]
        age = max(0.0, (now - v.occurred_at).total_seconds())
        heaviest = (v.severity.value, age, v.reason, ev.heaviest_penalty)
    violation_inputs: Inputs = (
        ("observed_s", observed),
        ("clean", ev.clean),
        ("clean_prior", vp.clean_record_prior),
        ("violations", len(signals.violations)),
        ("heaviest", heaviest),
    )
    cred = signals.credential
    c = policy.credential_age
    credential_inputs: Inputs = (("prior", c.prior),)
    if cred is not None:
        credential_inputs = (
            ("age_s", max(0.0, (now - cred.rotated_at).total_seconds())),
            ("source", cred.source),
            ("limits_s", (c.soft_limit_s, c.hard_limit_s)),
            ("floor", c.floor),
        )
    sr = signals.success_rate
    eb = signals.error_budget_remaining
    au = signals.audit_log_completeness
    values, ramps, decays = ev.values, ev.ramps, ev.decays
    return (
        FactorValue(
            "success_rate",
            values[0],
            _fading_inputs(sr, sr.value if sr else 0.0, policy.success_rate, ramps[0], decays[0],
                           now),
        ),
        FactorValue(
            "error_budget_remaining",
            values[1],
            _fading_inputs(eb, eb.remaining if eb else 0.0, policy.error_budget_remaining,
                           ramps[1], decays[1], now),
        ),
        FactorValue("violation_recency", values[2], violation_inputs),
        FactorValue("credential_age", values[3], credential_inputs),
        FactorValue(
            "audit_log_completeness",
            values[4],
            _fading_inputs(au, au.value if au else 0.0, policy.audit_log_completeness, ramps[2],
                           decays[2], now),
        ),
    )


def _fading_inputs(
    report: SuccessRate | ErrorBudget | AuditCompleteness | None,
    raw: float,
    fp: FadingFactorPolicy,
    ramped: float | None,
    decayed: float | None,
    now: datetime,
) -> Inputs:
    if report is None or ramped is None or decayed is None:
        return (("prior", fp.prior),)
    return (
        ("reported", raw),
        ("source", report.source),
        ("age_s", max(0.0, (now - report.observed_at).total_seconds())),
        ("ramp", (fp.zero_at, fp.full_at, ramped)),
        ("faded", 1.0 - decayed),
        ("prior", fp.prior),
    )
