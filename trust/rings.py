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
from typing import TYPE_CHECKING

from trust._internal.durations import human
from trust.errors import TrustError
from trust.tiers import MAX_SCORE, TIERS, tier_for

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
    previous = state.effective
    if terminated:
        return RingDecision(
            RingState(ExecutionRing.SANDBOX),
            previous,
            previous is not ExecutionRing.SANDBOX,
            "agent is terminated or revoked: sandbox, every call denied",
            denied=True,
        )
    tier = tier_for(score)
    allowed = policy.rings.tier_rings.ring(tier)
    target = max(granted, allowed)
    why_target = (
        f"score {score} ({tier.value}) allows {allowed.label}, operator granted {granted.label}"
    )
    if target > previous:
        return RingDecision(
            RingState(target),
            previous,
            True,
            f"demoted {previous.label} -> {target.label} at once: {why_target}",
        )
    if target == previous:
        return RingDecision(
            RingState(previous), previous, False, f"stays {previous.label}: {why_target}"
        )

    margin = policy.rings.promotion_margin
    hold = policy.rings.promotion_hold
    # Ring the score allows once the margin is taken off: monotone in the score, so
    # qualifying for ring r here means score >= threshold(r) + margin.
    lowered = max(0, min(MAX_SCORE, math.floor(score - margin)))
    qualified = max(granted, policy.rings.tier_rings.ring(tier_for(lowered)))
    if qualified >= previous:
        wanted = threshold(target, policy)
        return RingDecision(
            RingState(previous),
            previous,
            False,
            f"stays {previous.label}: {why_target}, but promotion needs the score at "
            f"{wanted}+{margin:g} or more for {_human_td(hold)}",
        )
    candidate, since = qualified, now
    if state.candidate is not None and state.candidate_since is not None:
        if state.candidate < previous:
            # The score has qualified since candidate_since for state.candidate; it
            # qualifies now for `qualified`. Both held for the less privileged of the two.
            candidate = max(qualified, state.candidate)
            since = min(state.candidate_since, now)
    held = now - since
    if held >= hold:
        return RingDecision(
            RingState(candidate),
            previous,
            True,
            f"promoted {previous.label} -> {candidate.label}: the score held at "
            f"{threshold(candidate, policy)}+{margin:g} or more for {_human_td(held)} "
            f"(hold {_human_td(hold)}); {why_target}",
        )
    return RingDecision(
        RingState(previous, candidate, since),
        previous,
        False,
        f"stays {previous.label}: promotion to {candidate.label} pending, held "
        f"{_human_td(held)} of {_human_td(hold)}; {why_target}",
    )


def _human_td(value: timedelta) -> str:
    return human(max(0.0, value.total_seconds()))
