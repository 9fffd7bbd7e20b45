"""The ``state`` payload every agent event carries, read from the store.

Call :func:`current_state` inside the transaction that writes the event, after
the change, so the payload is the agent's state *after* it.
"""

from __future__ import annotations

from typing import Any

from registry.events.state import AgentStatePayload, agent_state


def state_payload(
    *,
    status: str,
    granted_ring: int,
    current_kid: str,
    score: int | None,
    tier: str | None,
    effective_ring: int | None,
) -> AgentStatePayload:
    """The payload from stored facts. ``effective_ring`` is the trust-decided ring
    (hysteresis included); None before the first computation (the grant alone)."""
    return agent_state(
        status=status,
        granted_ring=granted_ring,
        current_kid=current_kid,
        score=score,
        tier=tier or "",
        tier_ring=effective_ring,
    )


def current_state(tx: Any, did: str) -> AgentStatePayload:
    """The agent's state as ``tx`` (a transaction or read view) sees it now."""
    agent = tx.agents.get(did)
    key = tx.keys.current(did)
    trust = tx.trust.state(did)
    return state_payload(
        status=agent.status,
        granted_ring=agent.granted_ring,
        current_kid=key.kid if key is not None else "",
        score=trust.score if trust is not None else None,
        tier=trust.tier if trust is not None else None,
        effective_ring=trust.effective_ring if trust is not None and trust.score is not None
        else None,
    )
