"""Execution rings and the ring state machine with hysteresis.

Rings: 0 kernel, 1 system, 2 user, 3 sandbox (numerically larger = less
privileged). The ring an agent may use is

    effective = max(granted_ring, ring_allowed_by(tier(score)))     # the less privileged

where ``granted_ring`` is what an operator granted and the tier's ring comes from
the policy (``rings.tier_rings``). A terminated or revoked agent is always in the
sandbox with every call denied.

Hysteresis (no flapping): a demotion applies at once. A promotion to ring ``r``
applies only after the score has stayed at or above ``threshold(r) + margin`` on
every decision for at least ``promotion_hold``, where ``threshold(r)`` is the
lowest score whose tier allows ``r``. :func:`decide` is a pure state machine:
feed it the previous :class:`RingState` and it returns the next one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum
from typing import TYPE_CHECKING, NamedTuple

from trust._internal.durations import human
from trust.errors import TrustError
from trust.kernel import RING_LABELS
from trust.tiers import MAX_SCORE, TIERS, tier_for, tier_of

if TYPE_CHECKING:
    from trust.policy import Policy


class ExecutionRing(IntEnum):
    """Privilege ring; a smaller number is more privileged."""

    KERNEL = 0
    SYSTEM = 1
    USER = 2
    SANDBOX = 3

    # The spellings Agent Governance Toolkit users know, as aliases of the same rings.
    RING_0_ROOT = 0
    RING_1_PRIVILEGED = 1
    RING_2_STANDARD = 2
    RING_3_SANDBOX = 3

    @property
    def label(self) -> str:
        """Lower-case name used in policies and reports (``kernel`` ... ``sandbox``)."""
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> ExecutionRing | None:
        """``kernel``/``system``/``user``/``sandbox``, an AGT alias, or ``0``..``3``; else None."""
        key = text.strip().upper()
        if key.isdigit() and int(key) in (0, 1, 2, 3):
            return cls(int(key))
        member = cls.__members__.get(key)
        return member


_RANK = {tier: rank for rank, tier in enumerate(TIERS)}


def _check_ring(value: object, what: str) -> ExecutionRing:
    if isinstance(value, ExecutionRing):
        return value
    raise TrustError(f"{what} must be an ExecutionRing, got {type(value).__name__}")


def ring_for_score(score: int, policy: Policy) -> ExecutionRing:
    """The most privileged ring the tier of ``score`` allows."""
    return policy.rings.tier_rings.ring(tier_for(score))


def threshold(ring: ExecutionRing, policy: Policy) -> int | None:
    """Lowest score whose tier allows ``ring`` (or better); ``None`` if no tier allows it."""
    for tier, allowed in zip(TIERS, policy.rings.tier_rings.as_tuple(), strict=True):
        if allowed <= ring:
            return tier.lower
    return None


def effective_ring(
    granted: ExecutionRing, score: int, policy: Policy, *, terminated: bool = False
) -> ExecutionRing:
    """The less privileged of the granted ring and the ring the score's tier allows
    (no hysteresis: what the ring would be if it followed the score instantly)."""
    if terminated:
        return ExecutionRing.SANDBOX
    return max(_check_ring(granted, "granted ring"), ring_for_score(score, policy))


@dataclass(frozen=True, slots=True)
class RingState:
    """Where an agent stands: its effective ring and any promotion it is holding for.

    ``candidate`` is the ring a pending promotion would reach and
    ``candidate_since`` the first decision at which the score qualified for it;
    both are ``None`` when no promotion is pending.
    """

    effective: ExecutionRing
    candidate: ExecutionRing | None = None
    candidate_since: datetime | None = None

    def __post_init__(self) -> None:
        _check_ring(self.effective, "RingState.effective")
        if (self.candidate is None) != (self.candidate_since is None):
            raise TrustError("RingState.candidate and candidate_since are set together or not")
        if self.candidate is not None:
            _check_ring(self.candidate, "RingState.candidate")
            if self.candidate >= self.effective:
                raise TrustError(
                    f"RingState.candidate {self.candidate.label} is not a promotion from "
                    f"{self.effective.label}"
                )

    @classmethod
    def initial(
        cls, granted: ExecutionRing, score: int, policy: Policy, *, terminated: bool = False
    ) -> RingState:
        """The state of an agent seen for the first time: its effective ring, nothing pending.

        There is no earlier ring to protect against flapping, so the first placement
        follows the score directly (a new agent's score sits at the prior anyway).
        """
        return cls(effective_ring(granted, score, policy, terminated=terminated))

    def promotion_due_at(self, policy: Policy) -> datetime | None:
        """When the pending promotion completes if the score keeps qualifying (else None);
        the scheduler calls :func:`decide` again at that time."""
        if self.candidate_since is None:
            return None
        return self.candidate_since + policy.rings.promotion_hold


@dataclass(frozen=True, slots=True)
class RingDecision:
    """The outcome of :func:`decide`: the next state and a sentence saying why."""

    new_state: RingState
    previous: ExecutionRing
    changed: bool
    reason: str
    denied: bool = False

    @property
    def ring(self) -> ExecutionRing:
        return self.new_state.effective

    @property
    def demoted(self) -> bool:
        return self.new_state.effective > self.previous

    @property
    def promoted(self) -> bool:
        return self.new_state.effective < self.previous


class RingStep(NamedTuple):
    """:func:`ring_step`'s outcome in plain values: the next effective ring, the
    pending promotion (``candidate``, ``candidate_since``; both ``None`` when none
    is pending), whether the effective ring changed, and why."""

    effective: int
    candidate: int | None
    candidate_since: datetime | None
    changed: bool
    reason: str
    denied: bool = False


TERMINATED_RING_REASON = "agent is terminated or revoked: sandbox, every call denied"


def ring_step(
    previous: int,
    candidate: int | None,
    candidate_since: datetime | None,
    granted: int,
    score: int,
    now: datetime,
    policy: Policy,
    terminated: bool = False,
) -> RingStep:
    """:func:`decide` on plain ring numbers, without its argument checks: the state
    machine itself, for callers holding many agents' states as stored rows.

    ``previous`` is the effective ring (0..3); ``candidate``/``candidate_since`` the
    pending promotion (a candidate that is not a promotion from ``previous`` is
    ignored); ``score`` an int in 0..1000.
    """
    if terminated:
        return RingStep(3, None, None, previous != 3, TERMINATED_RING_REASON, True)
    k = policy.kernel
    labels = RING_LABELS
    tier = tier_of(score)
    allowed = k.tier_rings[_RANK[tier]]
    target = granted if granted > allowed else allowed
    why_target = (
        f"score {score} ({tier.value}) allows {labels[allowed]}, "
        f"operator granted {labels[granted]}"
    )
    if target > previous:
        return RingStep(
            target, None, None, True,
            f"demoted {labels[previous]} -> {labels[target]} at once: {why_target}",
        )
    if target == previous:
        return RingStep(previous, None, None, False, f"stays {labels[previous]}: {why_target}")

    margin = k.margin
    # Ring the score allows once the margin is taken off: monotone in the score, so
    # qualifying for ring r here means score >= threshold(r) + margin.
    lowered = max(0, min(MAX_SCORE, math.floor(score - margin)))
    lowered_ring = k.tier_rings[_RANK[tier_of(lowered)]]
    qualified = granted if granted > lowered_ring else lowered_ring
    if qualified >= previous:
        return RingStep(
            previous, None, None, False,
            f"stays {labels[previous]}: {why_target}, but promotion needs the score at "
            f"{k.thresholds[target]}+{margin:g} or more for {k.hold_human}",
        )
    cand, since = qualified, now
    if candidate is not None and candidate_since is not None and candidate < previous:
        # The score has qualified since candidate_since for `candidate`; it qualifies
        # now for `qualified`. Both held for the less privileged of the two.
        cand = max(qualified, candidate)
        since = min(candidate_since, now)
    held = now - since
    if held >= k.hold:
        return RingStep(
            cand, None, None, True,
            f"promoted {labels[previous]} -> {labels[cand]}: the score held at "
            f"{k.thresholds[cand]}+{margin:g} or more for {_human_td(held)} "
            f"(hold {k.hold_human}); {why_target}",
        )
    return RingStep(
        previous, cand, since, False,
        f"stays {labels[previous]}: promotion to {labels[cand]} pending, held "
        f"{_human_td(held)} of {k.hold_human}; {why_target}",
    )


def decide(
    state: RingState,
    granted_ring: ExecutionRing,
    score: int,
    now: datetime,
    policy: Policy,
    *,
    terminated: bool = False,
) -> RingDecision:
    """Next ring state for an agent with ``score`` at ``now``.

    - terminated/revoked: sandbox at once, ``denied=True``;
    - target (``effective_ring``) less privileged than now: demote at once;
    - target equal: stay, any pending promotion is dropped;
    - target more privileged: promote to the best ring ``r`` with
      ``score >= threshold(r) + margin`` only once that has held for ``promotion_hold``
      (the hold restarts whenever a decision sees the score below it).
    """
    if not isinstance(state, RingState):
        raise TrustError(f"state must be a RingState, got {type(state).__name__}")
    granted = _check_ring(granted_ring, "granted ring")
    if now.tzinfo is None:
        raise TrustError("decide() needs a timezone-aware 'now'")
    if not terminated:
        tier_for(score)  # checks the score
    candidate = state.candidate
    step = ring_step(
        int(state.effective),
        None if candidate is None else int(candidate),
        state.candidate_since,
        int(granted),
        score,
        now,
        policy,
        terminated,
    )
    new_state = RingState(
        ExecutionRing(step.effective),
        None if step.candidate is None else ExecutionRing(step.candidate),
        step.candidate_since,
    )
    return RingDecision(new_state, state.effective, step.changed, step.reason, step.denied)


def _human_td(value: timedelta) -> str:
    return human(max(0.0, value.total_seconds()))
