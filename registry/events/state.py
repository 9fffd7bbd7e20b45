"""The agent state every agent event carries.

Each event stores the agent's state *after* the change, so a subscriber
applies events in order without reading anything else, and re-applying a
state it already has is harmless. That is what lets Watch hand out a
snapshot and the tail without a gap or a double.
"""

from __future__ import annotations

from typing import Any, TypedDict

from mesh.v1 import events_pb2, types_pb2

SANDBOX_RING = 3

_STATUS_TO_WIRE = {
    "active": types_pb2.AGENT_STATUS_ACTIVE,
    "revoked": types_pb2.AGENT_STATUS_REVOKED,
    "terminated": types_pb2.AGENT_STATUS_TERMINATED,
}


class AgentStatePayload(TypedDict):
    status: str
    granted_ring: int
    effective_ring: int
    score: int | None
    tier: str
    current_kid: str


def agent_state(
    *,
    status: str,
    granted_ring: int,
    current_kid: str,
    score: int | None = None,
    tier: str = "",
    tier_ring: int | None = None,
) -> AgentStatePayload:
    """The state payload for an agent: the effective ring is the less privileged
    of the granted ring and the ring its tier allows; inactive agents sit in the sandbox."""
    effective = max(granted_ring, tier_ring if tier_ring is not None else granted_ring)
    if status != "active":
        effective = SANDBOX_RING
    return {
        "status": status,
        "granted_ring": granted_ring,
        "effective_ring": effective,
        "score": score,
        "tier": tier,
        "current_kid": current_kid,
    }


def to_wire(did: str, state: dict[str, Any]) -> events_pb2.AgentState:
    score = state.get("score")
    return events_pb2.AgentState(
        did=did,
        status=_STATUS_TO_WIRE.get(str(state.get("status")), types_pb2.AGENT_STATUS_UNSPECIFIED),
        effective_ring=int(state.get("effective_ring", SANDBOX_RING)),
        granted_ring=int(state.get("granted_ring", SANDBOX_RING)),
        score=int(score) if score is not None else 0,
        has_score=score is not None,
        tier=str(state.get("tier") or ""),
        current_kid=str(state.get("current_kid") or ""),
    )
