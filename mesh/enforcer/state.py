"""The enforcer's in-memory picture of every agent, built only from the event stream.

Pure: it applies snapshot entries and events (protobuf messages from
``EventService.Watch``) and answers ``allowed()`` with one dict lookup.
Unknown, revoked and terminated agents are denied: the enforcer fails closed.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.v1 import events_pb2, types_pb2

SANDBOX_RING = 3
_ACTIVE = types_pb2.AGENT_STATUS_ACTIVE


class AgentView:
    """What the enforcer knows of one agent. Slotted: 100,000 of them stay small."""

    __slots__ = ("effective_ring", "score", "status", "tier")

    def __init__(self, status: int, effective_ring: int, score: int | None, tier: str) -> None:
        self.status = status
        self.effective_ring = effective_ring
        self.score = score
        self.tier = tier

    @property
    def active(self) -> bool:
        return self.status == _ACTIVE


@dataclass(frozen=True, slots=True)
class Change:
    """How one event changed one agent, for callbacks."""

    agent_did: str
    sequence: int
    event_type: int
    old: AgentView | None
    new: AgentView

    @property
    def demoted(self) -> bool:
        """Lost privilege: a less privileged ring, or no longer active."""
        if self.old is None:
            return not self.new.active
        return self.new.effective_ring > self.old.effective_ring or (
            self.old.active and not self.new.active
        )


class EnforcerState:
    """Every agent's status and effective ring, plus the last sequence applied."""

    __slots__ = ("_agents", "_pending", "last_sequence")

    def __init__(self) -> None:
        self._agents: dict[str, AgentView] = {}
        self._pending: dict[str, AgentView] | None = None
        self.last_sequence = 0

    def __len__(self) -> int:
        return len(self._agents)

    def get(self, agent_did: str) -> AgentView | None:
        return self._agents.get(agent_did)

    def allowed(self, agent_did: str, required_ring: int) -> bool:
        """True when the agent is active and its effective ring is ``required_ring`` or better.

        Rings count down to privilege (0 kernel .. 3 sandbox), so ring 1 may do
        what ring 2 may, and not the reverse.
        """
        view = self._agents.get(agent_did)
        return view is not None and view.status == _ACTIVE and view.effective_ring <= required_ring

    def why_denied(self, agent_did: str, required_ring: int) -> str | None:
        """None when allowed; otherwise the reason in words."""
        view = self._agents.get(agent_did)
        if view is None:
            return "the agent is unknown to this enforcer"
        if view.status != _ACTIVE:
            status = types_pb2.AgentStatus.Name(view.status).removeprefix("AGENT_STATUS_")
            return f"the agent is {status.lower()}"
        if view.effective_ring > required_ring:
            tier = view.tier or "unscored"
            return f"its effective ring is {view.effective_ring} (trust tier {tier})"
        return None

    def begin_snapshot(self) -> None:
        """Start collecting a fresh snapshot; the current picture keeps answering meanwhile."""
        self._pending = {}

    def apply_snapshot(self, state: events_pb2.AgentState) -> None:
        if self._pending is None:
            raise RuntimeError("apply_snapshot() before begin_snapshot()")
        self._pending[state.did] = _view(state)

    def finish_snapshot(self, sequence: int) -> list[Change]:
        """Swap in the completed snapshot; return how it changed agents already known."""
        if self._pending is None:
            raise RuntimeError("finish_snapshot() before begin_snapshot()")
        old_agents, self._agents, self._pending = self._agents, self._pending, None
        self.last_sequence = sequence
        changes = []
        for did, new in self._agents.items():
            old = old_agents.get(did)
            if old is not None and _key(old) != _key(new):
                changes.append(Change(did, sequence, 0, old, new))
        return changes

    def apply_event(self, event: events_pb2.Event) -> Change | None:
        """Apply one event in order; return the change it made to an agent, if any.

        Events at or below the last applied sequence are ignored, so a replayed
        tail after a reconnect can never apply twice.
        """
        if event.sequence <= self.last_sequence:
            return None
        self.last_sequence = event.sequence
        if not event.agent_did or not event.HasField("state"):
            return None
        old = self._agents.get(event.agent_did)
        new = _view(event.state)
        self._agents[event.agent_did] = new
        return Change(event.agent_did, event.sequence, event.type, old, new)


def _key(view: AgentView) -> tuple[int, int]:
    return view.status, view.effective_ring


def _view(state: events_pb2.AgentState) -> AgentView:
    ring = state.effective_ring if state.status == _ACTIVE else SANDBOX_RING
    return AgentView(
        status=state.status,
        effective_ring=min(max(ring, 0), SANDBOX_RING),
        score=state.score if state.has_score else None,
        tier=state.tier,
    )
