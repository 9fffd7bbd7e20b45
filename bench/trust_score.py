"""Pure trust scoring throughput for 100,000 agents (one core, no I/O).

Prints one JSON object:
  trust_pure_scores_per_s      compute_score over 100k varied agents
  trust_scorer_agt_per_s       TrustScorer.compute (AGT dict -> signals -> score)
  trust_recompute_due_per_s    next_recompute_due (one scoring-kernel pass each)
  trust_score_and_due_per_s    score_and_due: the Score and the due time from one pass
  trust_ring_decisions_per_s   rings.decide
"""

from __future__ import annotations

import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trust import (
    AgentSignals,
    AuditCompleteness,
    CredentialAge,
    ErrorBudget,
    ExecutionRing,
    Policy,
    RingState,
    Severity,
    SuccessRate,
    TrustScorer,
    Violation,
    compute_score,
    decide,
    next_recompute_due,
    score_and_due,
)

AGENTS = 100_000
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _agents(rng: random.Random) -> list[AgentSignals]:
    out = []
    sev = list(Severity)
    for _ in range(AGENTS):

        def ago(max_h: float) -> datetime:
            return NOW - timedelta(hours=rng.uniform(0, max_h))

        out.append(
            AgentSignals(
                success_rate=SuccessRate(rng.random(), ago(48), "slo")
                if rng.random() < 0.9
                else None,
                error_budget_remaining=ErrorBudget(rng.random(), ago(48), "slo"),
                violations=tuple(
                    Violation(rng.choice(sev), ago(24 * 30), "bench", "gateway")
                    for _ in range(rng.choice((0, 0, 0, 1, 2)))
                ),
                credential=CredentialAge(ago(24 * 50)),
                audit_log_completeness=AuditCompleteness(rng.random(), ago(96), "audit"),
                observed_since=ago(24 * 90),
            )
        )
    return out


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1)


def main() -> None:
    rng = random.Random(7)
    policy = Policy.default()
    agents = _agents(rng)

    start = time.perf_counter()
    scores = [compute_score(a, policy, NOW).value for a in agents]
    pure = time.perf_counter() - start

    scorer = TrustScorer(policy)
    dicts = [
        {
            "success_rate": rng.random(),
            "error_budget_remaining": rng.random(),
            "last_violation_age_hours": rng.uniform(0, 500),
            "api_key_rotation_days_ago": rng.uniform(0, 60),
            "audit_log_completeness": rng.random(),
        }
        for _ in range(AGENTS // 5)
    ]
    start = time.perf_counter()
    for i, d in enumerate(dicts):
        scorer.compute(f"agent-{i}", d, now=NOW)
    agt = time.perf_counter() - start

    sample = agents[: AGENTS // 5]
    start = time.perf_counter()
    for a in sample:
        next_recompute_due(a, policy, NOW)
    due = time.perf_counter() - start

    start = time.perf_counter()
    for a in sample:
        score_and_due(a, policy, NOW)
    both = time.perf_counter() - start

    state = RingState(ExecutionRing.USER)
    start = time.perf_counter()
    for i, s in enumerate(scores):
        state = decide(state, ExecutionRing.KERNEL, s, NOW + timedelta(seconds=i), policy).new_state
    ring = time.perf_counter() - start

    print(
        json.dumps(
            {
                "trust_pure_scores_per_s": _rate(AGENTS, pure),
                "trust_scorer_agt_per_s": _rate(len(dicts), agt),
                "trust_recompute_due_per_s": _rate(len(sample), due),
                "trust_score_and_due_per_s": _rate(len(sample), both),
                "trust_ring_decisions_per_s": _rate(len(scores), ring),
            }
        )
    )


if __name__ == "__main__":
    main()
