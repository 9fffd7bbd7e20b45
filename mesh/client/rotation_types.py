"""What the rotation calls return: plain, typed, immutable values (no protobuf)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


@dataclass(frozen=True)
class KeyRotation:
    """An identity key rotation the registry accepted."""

    did: str
    previous_kid: str
    kid: str
    # The rotation time: messages issued before it are the old key's, from it the new key's.
    at: datetime
    # False when the registry already held it (a retried or resumed rotation).
    rotated: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "did": self.did,
            "previous_kid": self.previous_kid,
            "kid": self.kid,
            "at": _iso(self.at),
            "rotated": self.rotated,
        }


class RotationState(StrEnum):
    PENDING = "pending"
    ROTATED = "rotated"
    FAILED = "failed"


@dataclass(frozen=True)
class RotationCampaign:
    id: str
    requested: int
    requested_at: datetime | None


@dataclass(frozen=True)
class AgentRotation:
    did: str
    state: RotationState
    requested_kid: str
    current_kid: str
    detail: str = ""


@dataclass(frozen=True)
class RotationStatus:
    campaign_id: str
    requested: int
    rotated: int
    pending: int
    failed: int
    agents: tuple[AgentRotation, ...] = ()

    @property
    def done(self) -> bool:
        """Nothing is pending any more."""
        return self.pending == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "requested": self.requested,
            "rotated": self.rotated,
            "pending": self.pending,
            "failed": self.failed,
            "agents": [
                {
                    "did": a.did,
                    "state": a.state.value,
                    "requested_kid": a.requested_kid,
                    "current_kid": a.current_kid,
                    "detail": a.detail,
                }
                for a in self.agents
            ],
        }


@dataclass(frozen=True)
class CAAuthority:
    kind: str  # "x509" | "jwt"
    id: str
    state: str  # "prepared" | "active" | "retired"
    not_before: datetime | None
    not_after: datetime | None


@dataclass(frozen=True)
class CAStatus:
    authorities: tuple[CAAuthority, ...]
    sequence: int
    next_change_at: datetime | None
    next_change: str
    changes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "authorities": [
                {
                    "kind": a.kind,
                    "id": a.id,
                    "state": a.state,
                    "not_before": _iso(a.not_before),
                    "not_after": _iso(a.not_after),
                }
                for a in self.authorities
            ],
            "next_change_at": _iso(self.next_change_at),
            "next_change": self.next_change,
            "changes": list(self.changes),
        }


__all__ = [
    "AgentRotation",
    "CAAuthority",
    "CAStatus",
    "KeyRotation",
    "RotationCampaign",
    "RotationState",
    "RotationStatus",
]
