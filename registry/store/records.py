"""What the store hands back: frozen dataclasses, detached from any session."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AgentRecord:
    did: str
    name: str
    spiffe_id: str
    status: str  # "active" | "revoked" | "terminated"
    granted_ring: int
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    revoked_at: datetime | None
    revoke_reason: str | None


@dataclass(frozen=True, slots=True)
class AgentKeyRecord:
    did: str
    index: int
    kid: str
    public_key: bytes
    valid_from: datetime
    rotated_at: datetime | None
    compromised_at: datetime | None


@dataclass(frozen=True, slots=True)
class JoinTokenRecord:
    """A join token as stored; the secret itself is never stored or returned."""

    id: str
    agent_name: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    used_by_did: str | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class ChallengeRecord:
    nonce: str
    purpose: str
    trust_domain: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None


@dataclass(frozen=True, slots=True)
class SvidRecord:
    serial: str
    did: str
    kind: str  # "x509" | "jwt"
    not_before: datetime
    not_after: datetime
    issued_at: datetime


@dataclass(frozen=True, slots=True)
class PrincipalRecord:
    id: str
    kind: str  # "operator" | "reporter" | "enforcer" | "agent"
    name: str
    roles: tuple[str, ...]
    credential_hash: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class EventRecord:
    seq: int
    type: str
    agent_did: str | None
    payload: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a keyset-paginated listing; pass ``next_page_token`` back
    to get the next page. ``None`` means this was the last page."""

    items: list[T]
    next_page_token: str | None


@dataclass(frozen=True, slots=True)
class AuditVerification:
    """Result of ``verify_audit_chain``; unpacks as ``ok, first_bad_seq, count = ...``."""

    ok: bool
    first_bad_seq: int | None
    count: int

    def __iter__(self) -> Iterator[Any]:
        return iter((self.ok, self.first_bad_seq, self.count))
