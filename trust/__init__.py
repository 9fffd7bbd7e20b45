"""trust: pure trust logic for trustmesh.

Signals (timestamped inputs) -> factors in [0, 1] (documented curves) -> a
0-1000 score with its breakdown -> a tier -> the execution ring the tier allows,
with hysteresis on promotion. Weights and curves come from a YAML policy. No
I/O apart from reading a policy file when asked to; nothing here imports the
registry or any server-side package.
"""

from trust.errors import PolicyError, SignalError, TrustError, UnknownFactorError
from trust.factors import FACTOR_NAMES, FactorValue, compute_factors
from trust.policy import Policy, default_policy_yaml
from trust.recompute import next_recompute_due, score_and_due
from trust.rings import (
    ExecutionRing,
    RingDecision,
    RingState,
    decide,
    effective_ring,
    ring_for_score,
    threshold,
)
from trust.score import FactorContribution, Score, compute_score
from trust.scorer import AGT_FACTORS, TrustScorer
from trust.signals import (
    AgentSignals,
    AuditCompleteness,
    CredentialAge,
    ErrorBudget,
    Severity,
    SuccessRate,
    Violation,
)
from trust.tiers import Tier, tier_for

__all__ = [
    "AGT_FACTORS",
    "FACTOR_NAMES",
    "AgentSignals",
    "AuditCompleteness",
    "CredentialAge",
    "ErrorBudget",
    "ExecutionRing",
    "FactorContribution",
    "FactorValue",
    "Policy",
    "PolicyError",
    "RingDecision",
    "RingState",
    "Score",
    "Severity",
    "SignalError",
    "SuccessRate",
    "Tier",
    "TrustError",
    "TrustScorer",
    "UnknownFactorError",
    "Violation",
    "compute_factors",
    "compute_score",
    "decide",
    "default_policy_yaml",
    "effective_ring",
    "next_recompute_due",
    "ring_for_score",
    "score_and_due",
    "threshold",
    "tier_for",
]
