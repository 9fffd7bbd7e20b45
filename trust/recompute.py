"""When does time alone move a score enough to matter? (incremental recompute)

The registry's scheduler recomputes an agent when its inputs change, and
otherwise only at :func:`next_recompute_due`. Between now and that instant the
score's unrounded value moves by less than ``allowed`` points, where

    allowed = min(recompute.tolerance_points, distance from the current unrounded
                  score to the nearest boundary where the rounded score changes tier
                  or crosses a promotion threshold (tier lower bound + margin))

so neither the tier nor a ring decision can change before it is due.

How: the time-dependent part of the score is a sum of terms, each moving
monotonically (a fading report, each violation's decaying penalty, the growing
clean record, the credential-age ramp). Since every factor lies in [0, 1],
the factor-level change of a product is at most the sum of its parts' changes,
so with ``n`` moving terms it suffices that no term moves ``allowed / n``
points. For a term decaying from magnitude ``M`` points (``M * 2**(-t/h)`` left to
move), the time to move ``d`` is ``-h * log2(1 - d / M)`` (never if ``M <= d``);
for the credential ramp (slope ``k`` points/s) it is ``d / k`` once past the soft
limit. The due time is the earliest over terms, but at least
``recompute.min_interval`` from now; ``None`` means time alone will never move
the score enough (recompute on new input only).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from trust.factors import decay, ramp
from trust.policy import FadingFactorPolicy, Policy
from trust.score import compute_score
from trust.signals import AgentSignals, AuditCompleteness, ErrorBudget, SuccessRate
from trust.tiers import TIER_BOUNDARIES

# A term whose remaining movement is below this (points) is considered still.
_EPSILON = 1e-9


def _age(now: datetime, then: datetime) -> float:
    return max(0.0, (now - then).total_seconds())


def _decaying_term(magnitude: float, age_s: float, half_life_s: float) -> tuple[float, float]:
    """(remaining movement in points, half-life) of a term ``magnitude * 2**(-t/h)``."""
    return magnitude * decay(age_s, half_life_s), half_life_s


def next_recompute_due(signals: AgentSignals, policy: Policy, now: datetime) -> datetime | None:
    """The next instant at which ``signals``' score may have moved enough to recompute."""
    if signals.terminated:
        return None  # pinned to 0: time changes nothing
    weights = policy.normalised_weights
    decaying: list[tuple[float, float]] = []  # (remaining points, half-life s)

    def fading(
        report: SuccessRate | ErrorBudget | AuditCompleteness | None,
        raw: float,
        fp: FadingFactorPolicy,
        weight: float,
    ) -> None:
        if report is None:
            return
        span = abs(ramp(raw, fp.zero_at, fp.full_at) - fp.prior) * 1000.0 * weight
        decaying.append(_decaying_term(span, _age(now, report.observed_at), fp.half_life_s))

    sr = signals.success_rate
    eb = signals.error_budget_remaining
    au = signals.audit_log_completeness
    fading(sr, sr.value if sr else 0.0, policy.success_rate, weights[0])
    fading(eb, eb.remaining if eb else 0.0, policy.error_budget_remaining, weights[1])
    fading(au, au.value if au else 0.0, policy.audit_log_completeness, weights[4])

    vp = policy.violation_recency
    w_v = weights[2] * 1000.0
    if signals.observed_since is not None:
        decaying.append(
            _decaying_term(
                w_v * (1.0 - vp.clean_record_prior),
                _age(now, signals.observed_since),
                vp.clean_record_half_life_s,
            )
        )
    for v in signals.violations:
        decaying.append(
            _decaying_term(
                w_v * vp.severity_weights.of(v.severity),
                _age(now, v.occurred_at),
                vp.half_life_s,
            )
        )

    # Credential ramp: (seconds until it starts moving, slope points/s, points left to move).
    ramp_term: tuple[float, float, float] | None = None
    if signals.credential is not None:
        c = policy.credential_age
        soft, hard = c.soft_limit_s, c.hard_limit_s
        age = _age(now, signals.credential.rotated_at)
        slope = weights[3] * 1000.0 * (1.0 - c.floor) / (hard - soft)
        if age < hard and slope > 0.0:
            start = max(0.0, soft - age)
            ramp_term = (start, slope, slope * (hard - max(age, soft)))

    moving = [t for t in decaying if t[0] > _EPSILON]
    n = len(moving) + (1 if ramp_term is not None and ramp_term[2] > _EPSILON else 0)
    if n == 0:
        return None

    allowed = min(policy.recompute.tolerance_points, _distance_to_boundary(signals, policy, now))
    step = allowed / n
    best: float | None = None
    for remaining, half_life in moving:
        if remaining <= step:
            continue  # it can never move `step` points from here
        dt = -half_life * math.log2(1.0 - step / remaining)
        best = dt if best is None else min(best, dt)
    if ramp_term is not None:
        start, slope, left = ramp_term
        if left > step:
            dt = start + step / slope
            best = dt if best is None else min(best, dt)
    if best is None:
        return None
    floor = policy.recompute.min_interval.total_seconds()
    # Round down to whole microseconds: never report a due time later than the bound.
    seconds = max(best, floor)
    return now + timedelta(microseconds=math.floor(seconds * 1_000_000))


def _distance_to_boundary(signals: AgentSignals, policy: Policy, now: datetime) -> float:
    score = compute_score(signals, policy, now)
    raw = 1000.0 * sum(f.weight * f.value for f in score.factors)
    margin = policy.rings.promotion_margin
    # Rounded score >= b  <=>  raw crosses b - 0.5 (within rounding of the half).
    edges = [b - 0.5 for b in TIER_BOUNDARIES]
    edges += [b + margin - 0.5 for b in TIER_BOUNDARIES if margin > 0]
    return min(abs(raw - e) for e in edges)
