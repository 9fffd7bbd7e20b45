"""One pass over an agent's inputs: its five factors, its score, and when it is next due.

:func:`trust.compute_score`, :func:`trust.compute_factors` and
:func:`trust.next_recompute_due` are all built on :meth:`ScoringKernel.evaluate`,
so the curves of :mod:`trust.factors` and the due-time bound of
:mod:`trust.recompute` are written once. The kernel takes plain numbers (a
reported value and its age in seconds, ...) instead of signal objects, so a
caller scoring many agents from stored rows (the registry's recompute) builds
no objects per agent beyond the :class:`Evaluation` it gets back.

Every decaying term is computed once and serves both the factor and the due
time: a fading report's ``decay(age)`` is the weight of the report in its
factor and the share of its distance from the prior still left to fade.

A :class:`ScoringKernel` holds the policy's numbers flattened into attributes;
:class:`trust.Policy` builds its own once (``policy.kernel``).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from trust._internal.durations import human
from trust.tiers import MAX_SCORE, TIER_BOUNDARIES, TIERS, Tier, tier_of

if TYPE_CHECKING:
    from trust.policy import FadingFactorPolicy, Policy

# A term whose remaining movement is below this (points) is considered still.
EPSILON = 1e-9

#: Ring labels by ring number (``ExecutionRing(n).label``), for hot paths.
RING_LABELS: tuple[str, ...] = ("kernel", "system", "user", "sandbox")


class Evaluation(NamedTuple):
    """What :meth:`ScoringKernel.evaluate` computed for one agent.

    ``values`` are the five factors in ``FACTOR_NAMES`` order; ``total`` is
    ``sum(weight_i * value_i)`` (so the unrounded score is ``1000 * total``);
    ``score`` the rounded 0..1000 score (0 when terminated) and ``tier`` its tier.
    ``due_us``: microseconds from ``now`` until the next recompute is due (the
    bound of :mod:`trust.recompute`, already floored at ``recompute.min_interval``),
    ``None`` when time alone will never matter or when it was not asked for.

    The rest explains the factors (the breakdown's inputs): ``ramps`` and
    ``decays`` of the three fading reports (``None`` without a report; the share
    faded toward the prior is ``1 - decay``), ``clean`` the clean-record part of
    the violation factor, ``heaviest`` the index of the violation weighing most
    now (``-1`` without violations) and ``heaviest_penalty`` its penalty.
    """

    values: tuple[float, float, float, float, float]
    total: float
    score: int
    tier: Tier
    due_us: int | None
    ramps: tuple[float | None, float | None, float | None]
    decays: tuple[float | None, float | None, float | None]
    clean: float
    heaviest: int
    heaviest_penalty: float


class ScoringKernel:
    """A policy's numbers, flattened once, and the single-pass evaluation."""

    __slots__ = (
        "audit",
        "credential",
        "edges",
        "error_budget",
        "hold",
        "hold_human",
        "margin",
        "min_interval_s",
        "severity_weights",
        "success_rate",
        "thresholds",
        "tier_rings",
        "tolerance",
        "v_clean_half_life",
        "v_clean_prior",
        "v_clean_span",
        "v_half_life",
        "v_points",
        "weights",
    )

    def __init__(self, policy: Policy) -> None:
        w = policy.normalised_weights
        self.weights: tuple[float, float, float, float, float] = (w[0], w[1], w[2], w[3], w[4])
        # Fading factors: (prior, zero_at, full_at, half-life s, weight).
        self.success_rate = _fading(policy.success_rate, w[0])
        self.error_budget = _fading(policy.error_budget_remaining, w[1])
        self.audit = _fading(policy.audit_log_completeness, w[4])
        vp = policy.violation_recency
        self.v_half_life = vp.half_life_s
        self.v_clean_prior = vp.clean_record_prior
        self.v_clean_half_life = vp.clean_record_half_life_s
        #: Points the violation factor carries (its weight in points).
        self.v_points = w[2] * 1000.0
        self.v_clean_span = self.v_points * (1.0 - vp.clean_record_prior)
        sw = vp.severity_weights
        #: Penalty at age 0 by severity name (``Severity.value``).
        self.severity_weights: dict[str, float] = {
            "low": sw.low,
            "medium": sw.medium,
            "high": sw.high,
            "critical": sw.critical,
        }
        c = policy.credential_age
        soft, hard = c.soft_limit_s, c.hard_limit_s
        # (prior, soft s, hard s, floor, slope of the ramp in points/s)
        slope = w[3] * 1000.0 * (1.0 - c.floor) / (hard - soft)
        self.credential = (c.prior, soft, hard, c.floor, slope)
        r = policy.rings
        #: The most privileged ring each tier allows, by tier rank.
        self.tier_rings: tuple[int, ...] = tuple(int(x) for x in r.tier_rings.as_tuple())
        #: Lowest score whose tier allows ring n (or better), by ring number; None: none does.
        self.thresholds: tuple[int | None, ...] = tuple(
            next((t.lower for t, a in zip(TIERS, self.tier_rings, strict=True) if a <= ring), None)
            for ring in range(4)
        )
        self.margin = r.promotion_margin
        self.hold = r.promotion_hold
        self.hold_human = human(max(0.0, self.hold.total_seconds()))
        self.tolerance = policy.recompute.tolerance_points
        self.min_interval_s = policy.recompute.min_interval.total_seconds()
        # Where the rounded score changes tier (b - 0.5) or crosses a promotion
        # threshold (b + margin - 0.5), sorted for a bisect.
        edges = [b - 0.5 for b in TIER_BOUNDARIES]
        edges += [b + self.margin - 0.5 for b in TIER_BOUNDARIES if self.margin > 0]
        self.edges: tuple[float, ...] = tuple(sorted(edges))

    def evaluate(
        self,
        success_rate: float | None,
        success_rate_age: float,
        error_budget: float | None,
        error_budget_age: float,
        audit: float | None,
        audit_age: float,
        violations: Sequence[tuple[float, float]],
        observed_s: float | None,
        credential_s: float | None,
        terminated: bool,
        due: bool,
    ) -> Evaluation:
        """Score one agent from plain numbers.

        Reports are a value (``None``: no report) and its age in seconds (a
        negative age, clock skew, counts as 0); ``violations`` are
        (penalty at age 0, age s) pairs; ``observed_s`` how long the agent has
        been observed (``None``: unknown); ``credential_s`` the age of its key
        (``None``: unknown). With ``due``, also the next due time (``due_us``).
        """
        # Time-dependent terms, for the due time: (points left to move, half-life s).
        terms: list[tuple[float, float]] | None = [] if due and not terminated else None
        if success_rate is None:
            f0, r0, d0 = self.success_rate[0], None, None
        else:
            f0, r0, d0 = _fade(self.success_rate, success_rate, success_rate_age, terms)
        if error_budget is None:
            f1, r1, d1 = self.error_budget[0], None, None
        else:
            f1, r1, d1 = _fade(self.error_budget, error_budget, error_budget_age, terms)
        if audit is None:
            f4, r4, d4 = self.audit[0], None, None
        else:
            f4, r4, d4 = _fade(self.audit, audit, audit_age, terms)

        # Violation recency: clean record times each violation's surviving share.
        if observed_s is None:
            clean = self.v_clean_prior
        else:
            observed = observed_s if observed_s > 0.0 else 0.0
            dc = 2.0 ** (-observed / self.v_clean_half_life) if observed > 0.0 else 1.0
            clean = 1.0 - (1.0 - self.v_clean_prior) * dc
            if terms is not None:
                terms.append((self.v_clean_span * dc, self.v_clean_half_life))
        f2 = clean
        heaviest = -1
        worst = -1.0
        if violations:
            half_life = self.v_half_life
            points = self.v_points
            for i, (weight, age) in enumerate(violations):
                d = 2.0 ** (-age / half_life) if age > 0.0 else 1.0
                p = weight * d
                f2 *= 1.0 - p
                if p > worst:
                    worst = p
                    heaviest = i
                if terms is not None:
                    terms.append((points * weight * d, half_life))

        # Credential age: 1 up to the soft limit, then linear down to the floor.
        # The ramp as a due-time term: seconds until it starts moving, points left.
        ramp_start = ramp_left = 0.0
        if credential_s is None:
            f3 = self.credential[0]
        else:
            _, soft, hard, floor, slope = self.credential
            age = credential_s if credential_s > 0.0 else 0.0
            if age <= soft:
                f3 = 1.0
            elif age >= hard:
                f3 = floor
            else:
                # max() keeps the curve monotone where float rounding would dip below the floor.
                f3 = max(floor, 1.0 - (1.0 - floor) * (age - soft) / (hard - soft))
            if terms is not None and age < hard and slope > 0.0:
                ramp_start = soft - age if soft > age else 0.0
                ramp_left = slope * (hard - (age if age > soft else soft))

        w0, w1, w2, w3, w4 = self.weights
        total = 0.0
        total += w0 * f0
        total += w1 * f1
        total += w2 * f2
        total += w3 * f3
        total += w4 * f4
        if terminated:
            score = 0
        else:
            score = round(1000.0 * total)
            if score < 0:
                score = 0
            elif score > MAX_SCORE:
                score = MAX_SCORE
        due_us = (
            None if terms is None else self._due_us(terms, ramp_start, ramp_left, 1000.0 * total)
        )
        return Evaluation(
            (f0, f1, f2, f3, f4),
            total,
            score,
            tier_of(score),
            due_us,
            (r0, r1, r4),
            (d0, d1, d4),
            clean,
            heaviest,
            worst if heaviest >= 0 else 0.0,
        )

    def _due_us(
        self, terms: list[tuple[float, float]], ramp_start: float, ramp_left: float, raw: float
    ) -> int | None:
        """The bound of :mod:`trust.recompute`: no term may move ``allowed / n`` points
        (``ramp_left``: points the credential ramp has left to move, 0 if none)."""
        n = 0
        for remaining, _ in terms:
            if remaining > EPSILON:
                n += 1
        if ramp_left > EPSILON:
            n += 1
        if n == 0:
            return None
        edges = self.edges
        i = bisect_left(edges, raw)
        if i == len(edges):
            distance = raw - edges[i - 1]
        elif i == 0:
            distance = edges[0] - raw
        else:
            distance = min(edges[i] - raw, raw - edges[i - 1])
        step = (self.tolerance if self.tolerance < distance else distance) / n
        best = math.inf
        log2 = math.log2
        for remaining, half_life in terms:
            if remaining > step and remaining > EPSILON:
                dt = -half_life * log2(1.0 - step / remaining)
                if dt < best:
                    best = dt
        if ramp_left > step:
            dt = ramp_start + step / self.credential[4]
            if dt < best:
                best = dt
        if best == math.inf:
            return None
        # Round down to whole microseconds: never report a due time later than the bound.
        floor = self.min_interval_s
        return math.floor((best if best > floor else floor) * 1_000_000)




def _fading(fp: FadingFactorPolicy, weight: float) -> tuple[float, float, float, float, float]:
    return (fp.prior, fp.zero_at, fp.full_at, fp.half_life_s, weight)


def _fade(
    fp: tuple[float, float, float, float, float],
    value: float,
    age: float,
    terms: list[tuple[float, float]] | None,
) -> tuple[float, float, float]:
    """(factor, ramp(value), decay) of a fading report."""
    prior, zero_at, full_at, half_life, weight = fp
    if value <= zero_at:
        r = 0.0
    elif value >= full_at:
        r = 1.0
    else:
        r = (value - zero_at) / (full_at - zero_at)
    d = 2.0 ** (-age / half_life) if age > 0.0 else 1.0
    f = prior + (r - prior) * d
    if f < 0.0:
        f = 0.0
    elif f > 1.0:
        f = 1.0
    if terms is not None:
        terms.append((abs(r - prior) * 1000.0 * weight * d, half_life))
    return f, r, d
