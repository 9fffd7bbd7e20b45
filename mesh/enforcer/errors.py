from __future__ import annotations

from mesh.errors import MeshError


class RingDenied(MeshError):
    """A call was refused because the agent's effective ring is not privileged enough."""

    def __init__(self, agent_did: str, required_ring: int, reason: str) -> None:
        self.agent_did = agent_did
        self.required_ring = required_ring
        self.reason = reason
        super().__init__(
            f"{agent_did} may not run this (needs ring {required_ring}): {reason}",
            hint="check `mesh trust report` for the agent's score and ring",
        )
