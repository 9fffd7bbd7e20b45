"""What the registry client returns: plain, typed, immutable values (no protobuf)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class AgentStatus(StrEnum):
    UNSPECIFIED = "unspecified"
    ACTIVE = "active"
    REVOKED = "revoked"
    TERMINATED = "terminated"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


@dataclass(frozen=True)
class KeyInfo:
    kid: str
    public_key: bytes
    index: int
    valid_from: datetime | None
    rotated_at: datetime | None = None
    compromised_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "public_key": base64.urlsafe_b64encode(self.public_key).rstrip(b"=").decode(),
            "index": self.index,
            "valid_from": _iso(self.valid_from),
            "rotated_at": _iso(self.rotated_at),
            "compromised_at": _iso(self.compromised_at),
        }


@dataclass(frozen=True)
class Agent:
    did: str
    name: str
    spiffe_id: str
    status: AgentStatus
    granted_ring: int
    current_key: KeyInfo | None
    metadata: dict[str, str]
    created_at: datetime | None
    updated_at: datetime | None
    revoked_at: datetime | None
    revoke_reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "did": self.did,
            "name": self.name,
            "spiffe_id": self.spiffe_id,
            "status": self.status.value,
            "granted_ring": self.granted_ring,
            "current_key": self.current_key.to_dict() if self.current_key else None,
            "metadata": dict(self.metadata),
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "revoked_at": _iso(self.revoked_at),
            "revoke_reason": self.revoke_reason,
        }


@dataclass(frozen=True)
class JoinToken:
    """A join token as the registry lists it (never the secret)."""

    id: str
    agent_name: str
    created_at: datetime | None
    expires_at: datetime | None
    used_at: datetime | None
    used_by_did: str
    revoked_at: datetime | None

    def state(self, now: datetime | None = None) -> str:
        """``active``, ``used``, ``revoked`` or ``expired``."""
        if self.revoked_at:
            return "revoked"
        if self.used_at:
            return "used"
        if self.expires_at and self.expires_at <= (now or datetime.now(UTC)):
            return "expired"
        return "active"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "agent_name": self.agent_name,
            "state": self.state(),
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "used_at": _iso(self.used_at),
            "used_by_did": self.used_by_did or None,
            "revoked_at": _iso(self.revoked_at),
        }


@dataclass(frozen=True)
class CreatedJoinToken:
    """A new join token: ``token`` is the one-time secret, shown once."""

    token: str = field(repr=False)
    info: JoinToken

    def to_dict(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "id": self.info.id,
            "agent_name": self.info.agent_name,
            "expires_at": _iso(self.info.expires_at),
        }


@dataclass(frozen=True)
class Resolution:
    """A DID resolved by the registry: its agent, every key, and the signed key history."""

    agent: Agent
    keys: tuple[KeyInfo, ...]
    key_history: str
    resolved_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent.to_dict(),
            "keys": [k.to_dict() for k in self.keys],
            "key_history": self.key_history or None,
            "resolved_at": _iso(self.resolved_at),
        }


@dataclass(frozen=True)
class TrustBundle:
    trust_domain: str
    spiffe_bundle: bytes
    x509_authorities_pem: bytes
    sequence: int


@dataclass(frozen=True)
class JWTSVID:
    """A JWT-SVID: ``token`` is a bearer credential, never log it."""

    token: str = field(repr=False)
    spiffe_id: str
    expires_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "spiffe_id": self.spiffe_id,
            "expires_at": _iso(self.expires_at),
        }


@dataclass(frozen=True)
class Registration:
    """The outcome of a registration or renewal, as written to the agent directory."""

    did: str
    spiffe_id: str
    trust_domain: str
    created: bool
    serial_number: int
    not_before: datetime
    not_after: datetime
    bundle_sequence: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "did": self.did,
            "spiffe_id": self.spiffe_id,
            "trust_domain": self.trust_domain,
            "created": self.created,
            "serial_number": format(self.serial_number, "x"),
            "not_before": _iso(self.not_before),
            "not_after": _iso(self.not_after),
            "bundle_sequence": self.bundle_sequence,
        }
