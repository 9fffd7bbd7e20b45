"""The trust score: ``round(1000 * sum(w_i * f_i))`` with normalised weights, 0..1000.

Every :class:`Score` keeps its per-factor breakdown, so "why is my score 430?"
always has an answer (:meth:`Score.explain`). ``round`` is Python's (half to
even); the result is clamped to 0..1000 against float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from trust.errors import TrustError
from trust.factors import Inputs, describe, evaluate_signals, factor_values
from trust.kernel import Evaluation
from trust.policy import Policy
from trust.signals import AgentSignals
from trust.tiers import Tier

TERMINATED_REASON = "agent is terminated or revoked: score pinned to 0"


@dataclass(frozen=True, slots=True)
class FactorContribution:
    """One factor's share of a score.

    ``value`` is the factor in [0, 1], ``weight`` its normalised weight,
    ``contribution`` = ``1000 * weight * value`` (points, before rounding),
    ``inputs`` the (name, value) pairs that produced it, and ``why`` a sentence
    rendering them (built on demand: scoring stays cheap).
    """

    name: str
    value: float
    weight: float
    contribution: float
    inputs: Inputs

    @property
    def why(self) -> str:
        return describe(self.name, self.inputs)


@dataclass(frozen=True, slots=True)
class Score:
    """A computed trust score with its tier and breakdown.

    ``pinned`` is set when the value was forced (a terminated or revoked agent is
    pinned to 0); the factors are still computed and kept for the record.
    """

    value: int
    tier: Tier
    factors: tuple[FactorContribution, ...]
    computed_at: datetime
    pinned: str | None = None

    def factor(self, name: str) -> FactorContribution:
        for f in self.factors:
            if f.name == name:
                return f
        raise TrustError(
            f"score has no factor {name!r}",
            hint="factors: " + ", ".join(f.name for f in self.factors),
        )

    @property
    def raw(self) -> float:
        """The unrounded weighted sum, in points (0..1000)."""
        return sum(f.contribution for f in self.factors)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (for events, audit records and ``trust report``)."""
        return {
            "value": self.value,
            "tier": self.tier.value,
            "computed_at": self.computed_at.isoformat(),
            "pinned": self.pinned,
            "factors": [
                {
                    "name": f.name,
                    "value": f.value,
                    "weight": f.weight,
                    "contribution": f.contribution,
                    "inputs": dict(f.inputs),
                    "why": f.why,
                }
                for f in self.factors
            ],
        }

    def explain(self) -> list[str]:
        """Human lines: the score and tier, then each factor's points and why."""
        lines = [f"score {self.value} ({self.tier.value}) at {self.computed_at.isoformat()}"]
        if self.pinned:
            lines.append(self.pinned)
        for f in sorted(self.factors, key=lambda f: f.weight * (1.0 - f.value), reverse=True):
            lines.append(
                f"  {f.name}: {f.value:.3f} x weight {f.weight:.3f} = {f.contribution:.1f} pts "
                f"(of {1000 * f.weight:.0f}); {f.why}"
            )
        return lines


def compute_score(signals: AgentSignals, policy: Policy, now: datetime) -> Score:
    """Score one agent's signals at ``now`` (timezone-aware) under ``policy``."""
    if not isinstance(signals, AgentSignals):
        raise TrustError(f"signals must be AgentSignals, got {type(signals).__name__}")
    if not isinstance(policy, Policy):
        raise TrustError(
            f"policy must be a trust Policy, got {type(policy).__name__}",
            hint="use Policy.default(), Policy.load(path) or Policy.from_mapping(...)",
        )
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise TrustError("compute_score needs a timezone-aware datetime 'now'")
    return score_of(signals, policy, now, evaluate_signals(signals, policy, now))


def score_of(signals: AgentSignals, policy: Policy, now: datetime, ev: Evaluation) -> Score:
    """The :class:`Score` of ``ev``, an evaluation of ``signals`` at ``now``."""
    weights = policy.normalised_weights
    contributions = tuple(
        FactorContribution(fv.name, fv.value, weight, 1000.0 * (weight * fv.value), fv.inputs)
        for fv, weight in zip(factor_values(signals, policy, now, ev), weights, strict=True)
    )
    if signals.terminated:
        return Score(0, Tier.UNTRUSTED, contributions, now, TERMINATED_REASON)
    return Score(ev.score, ev.tier, contributions, now)
