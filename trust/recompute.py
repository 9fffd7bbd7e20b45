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

The arithmetic lives in :class:`trust.kernel.ScoringKernel`, which computes the
score and this bound in one pass (:func:`score_and_due` returns both).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from trust.errors import TrustError
from trust.factors import evaluate_signals
from trust.policy import Policy
from trust.score import Score, score_of
from trust.signals import AgentSignals


def next_recompute_due(signals: AgentSignals, policy: Policy, now: datetime) -> datetime | None:
    """The next instant at which ``signals``' score may have moved enough to recompute."""
    due_us = evaluate_signals(signals, policy, now, due=True).due_us
    return None if due_us is None else now + timedelta(microseconds=due_us)


def score_and_due(
    signals: AgentSignals, policy: Policy, now: datetime
) -> tuple[Score, datetime | None]:
    """``compute_score`` and ``next_recompute_due`` from a single evaluation."""
    if not isinstance(signals, AgentSignals) or not isinstance(policy, Policy):
        raise TrustError("score_and_due needs AgentSignals and a trust Policy")
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise TrustError("score_and_due needs a timezone-aware datetime 'now'")
    ev = evaluate_signals(signals, policy, now, due=True)
    due = None if ev.due_us is None else now + timedelta(microseconds=ev.due_us)
    return score_of(signals, policy, now, ev), due
