"""The recompute: due agents' inputs in bulk -> ``trust`` -> changed results, batched.

One run:

1. take the recompute lock (one run at a time, one replica at a time);
2. read, in one snapshot, every due agent's inputs (never computed, new input,
   time-dependent factors due per ``trust.next_recompute_due``, a promotion
   being held, or the agent row changed since) and the recent violations;
3. compute each score, ring decision (hysteresis) and next due time;
4. per batch, in ONE transaction: the new trust states, a history point for
   every agent whose score, tier or ring changed, and the score/tier/ring
   events (each carrying the agent's state after the change).

Nothing is written as an event unless it changed; an agent whose score did
not move only gets its ``next_due_at`` and ``dirty`` updated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from registry.events import types as event_types
from registry.scoring.inputs import json_inputs, to_signals
from registry.scoring.lock import RecomputeLock
from registry.scoring.state import state_payload
from registry.store.repos.trust import AgentInputs, ViolationRow
from trust import (
    ExecutionRing,
    Policy,
    RingState,
    compute_score,
    decide,
    next_recompute_due,
)

log = logging.getLogger(__name__)

SANDBOX = int(ExecutionRing.SANDBOX)
#: Violations older than this many half-lives weigh nothing measurable (2**-30).
VIOLATION_HALF_LIVES = 30
#: The compute pauses for a moment after this many agents, so the server's event
#: loop (Watch streams, RPCs) gets the GIL while a large run computes.
YIELD_EVERY = 250
YIELD_SECONDS = 0.001


@dataclass(frozen=True, slots=True)
class RecomputeResult:
    examined: int = 0
    changed: int = 0
    events: int = 0
    last_sequence: int = 0
    #: Another run held the lock; nothing was done.
    skipped: bool = False


@dataclass(frozen=True, slots=True)
class _Outcome:
    row: dict[str, Any]
    history: dict[str, Any] | None
    events: list[tuple[str, str | None, dict[str, Any]]]


class Recomputer:
    """Recomputes trust for a store under one policy. Thread-safe; blocking."""

    def __init__(
        self,
        store: Any,
        policy: Policy | None = None,
        *,
        batch: int = 5000,
        on_commit: Callable[[RecomputeResult], None] | None = None,
    ) -> None:
        self.store = store
        self.policy = policy or Policy.default()
        self.batch = batch
        self.lock = RecomputeLock(store)
        self._on_commit = on_commit

    def close(self) -> None:
        """Nothing to release today; the server calls it on shutdown."""

    def run(
        self,
        *,
        dids: Sequence[str] | None = None,
        everything: bool = False,
        wait: float = 0.0,
    ) -> RecomputeResult:
        """Recompute due agents (or ``dids``, or ``everything``).

        ``wait``: how long to wait for a run in progress (0: skip at once)."""
        with self.lock.hold(wait=wait) as held:
            if not held:
                return RecomputeResult(skipped=True)
            return self._run(dids, everything)

    def _run(self, dids: Sequence[str] | None, everything: bool) -> RecomputeResult:
        policy = self.policy
        now = self.store.now()
        since = now - policy.violation_recency.half_life * VIOLATION_HALF_LIVES
        with self.store.read() as view:
            due_at = None if (everything or dids is not None) else now
            agents = view.trust.inputs(dids=dids, due_at=due_at)
            if not agents:
                return RecomputeResult()
            # Few agents: fetch only theirs; many: one scan of the window is cheaper.
            wanted = [a.did for a in agents] if len(agents) <= 500 else None
            violations = view.trust.violations(since, dids=wanted)
        examined = changed = events = 0
        last_seq = 0
        for chunk, outcomes in self._outcomes(agents, violations, now):
            rows = [o.row for o in outcomes]
            history = [o.history for o in outcomes if o.history is not None]
            new_events = [e for o in outcomes for e in o.events]
            with self.store.transaction() as tx:
                missing = [a.did for a in chunk if a.state is None]
                tx.trust.ensure_states(
                    missing, default_ring=SANDBOX, dirty=False, updated_at=now
                )
                tx.trust.write_results(rows, read_at=now)
                tx.trust.add_history(history)
                seq = tx.trust.append_events(new_events)
            examined += len(chunk)
            changed += len(history)
            events += len(new_events)
            last_seq = seq or last_seq
        result = RecomputeResult(examined, changed, events, last_seq)
        if self._on_commit is not None:
            self._on_commit(result)
        return result

    def _outcomes(
        self, agents: list[AgentInputs], violations: dict[str, list[ViolationRow]], now: datetime
    ) -> Iterator[tuple[list[AgentInputs], list[_Outcome]]]:
        policy = self.policy
        for start in range(0, len(agents), self.batch):
            chunk = agents[start : start + self.batch]
            outcomes = []
            for i, agent in enumerate(chunk):
                if i and i % YIELD_EVERY == 0:
                    time.sleep(YIELD_SECONDS)
                outcomes.append(compute_one(agent, violations.get(agent.did, ()), now, policy))
            yield chunk, outcomes


def compute_one(
    agent: AgentInputs, violations: Sequence[ViolationRow], now: datetime, policy: Policy
) -> _Outcome:
    """One agent's score, ring decision, next due time, and what changed (pure)."""
    signals = to_signals(agent, violations)
    score = compute_score(signals, policy, now)
    granted = ExecutionRing(agent.granted_ring)
    terminated = agent.status != "active"
    st = agent.state
    if st is None or st.score is None:
        ring_state = RingState.initial(granted, score.value, policy, terminated=terminated)
        reason = (
            f"first placement: score {score.value} ({score.tier.value}) allows "
            f"{policy.rings.tier_rings.ring(score.tier).label}, operator granted "
            f"{granted.label}"
        )
        if terminated:
            reason = "agent is terminated or revoked: sandbox, every call denied"
    else:
        decision = decide(
            _ring_state(st.effective_ring, st.candidate_ring, st.candidate_since),
            granted,
            score.value,
            now,
            policy,
            terminated=terminated,
        )
        ring_state, reason = decision.new_state, decision.reason
    due = next_recompute_due(signals, policy, now)
    promotion = ring_state.promotion_due_at(policy)
    if promotion is not None and (due is None or promotion < due):
        due = promotion
    ring = int(ring_state.effective)
    tier = score.tier.value
    row = {
        "did": agent.did,
        "score": score.value,
        "tier": tier,
        "effective_ring": ring,
        "candidate_ring": (
            int(ring_state.candidate) if ring_state.candidate is not None else None
        ),
        "candidate_since": ring_state.candidate_since,
        "ring_reason": reason,
        "breakdown": [
            {
                "name": f.name,
                "value": f.value,
                "weight": f.weight,
                "points": f.contribution,
                "inputs": json_inputs(f.inputs),
            }
            for f in score.factors
        ],
        "next_due_at": due,
        "computed_at": now,
    }
    # What subscribers were last told: a first score follows the grant alone, and
    # an inactive agent has been in the sandbox since the event that made it so.
    prev_score = st.score if st is not None else None
    prev_tier = st.tier if st is not None else None
    if terminated:
        prev_ring = SANDBOX
    elif st is None or st.score is None:
        prev_ring = agent.granted_ring
    else:
        prev_ring = st.effective_ring
    published_ring = ring
    events: list[tuple[str, str | None, dict[str, Any]]] = []
    if score.value == prev_score and tier == prev_tier and published_ring == prev_ring:
        return _Outcome(row, None, events)
    state = state_payload(
        status=agent.status,
        granted_ring=agent.granted_ring,
        current_kid=agent.current_kid,
        score=score.value,
        tier=tier,
        effective_ring=ring,
    )
    if score.value != prev_score:
        events.append(
            (
                event_types.SCORE_CHANGED,
                agent.did,
                {"old": prev_score, "new": score.value, "state": dict(state)},
            )
        )
    if tier != prev_tier:
        events.append(
            (
                event_types.TIER_CHANGED,
                agent.did,
                {"old": prev_tier, "new": tier, "state": dict(state)},
            )
        )
    if published_ring != prev_ring:
        events.append(
            (
                event_types.RING_CHANGED,
                agent.did,
                {
                    "old": prev_ring,
                    "new": published_ring,
                    "reason": reason,
                    "state": dict(state),
                },
            )
        )
    history = {
        "did": agent.did,
        "computed_at": now,
        "score": score.value,
        "tier": tier,
        "effective_ring": published_ring,
    }
    return _Outcome(row, history, events)


def _ring_state(
    effective: int, candidate: int | None, since: datetime | None
) -> RingState:
    ring = ExecutionRing(min(max(effective, 0), SANDBOX))
    if candidate is None or since is None or candidate >= ring:
        return RingState(ring)
    return RingState(ring, ExecutionRing(candidate), since)
