"""Protobuf messages -> the client's plain values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mesh.client.types import (
    JWTSVID,
    Agent,
    AgentStatus,
    JoinToken,
    KeyInfo,
    Resolution,
    TrustBundle,
)
from mesh.v1 import agents_pb2, svid_pb2, tokens_pb2, types_pb2

_STATUS = {
    types_pb2.AGENT_STATUS_UNSPECIFIED: AgentStatus.UNSPECIFIED,
    types_pb2.AGENT_STATUS_ACTIVE: AgentStatus.ACTIVE,
    types_pb2.AGENT_STATUS_REVOKED: AgentStatus.REVOKED,
    types_pb2.AGENT_STATUS_TERMINATED: AgentStatus.TERMINATED,
}

STATUS_TO_PROTO = {v: k for k, v in _STATUS.items()}


def time_of(message: Any, name: str) -> datetime | None:
    """A Timestamp field as an aware UTC datetime, or None when unset."""
    if not message.HasField(name):
        return None
    value: datetime = getattr(message, name).ToDatetime(tzinfo=UTC)
    return value


def key_info(msg: types_pb2.KeyInfo) -> KeyInfo:
    return KeyInfo(
        kid=msg.kid,
        public_key=bytes(msg.public_key),
        index=msg.index,
        valid_from=time_of(msg, "valid_from"),
        rotated_at=time_of(msg, "rotated_at"),
        compromised_at=time_of(msg, "compromised_at"),
    )


def agent(msg: types_pb2.Agent) -> Agent:
    return Agent(
        did=msg.did,
        name=msg.name,
        spiffe_id=msg.spiffe_id,
        status=_STATUS.get(msg.status, AgentStatus.UNSPECIFIED),
        granted_ring=msg.granted_ring,
        current_key=key_info(msg.current_key) if msg.HasField("current_key") else None,
        metadata=dict(msg.metadata),
        created_at=time_of(msg, "created_at"),
        updated_at=time_of(msg, "updated_at"),
        revoked_at=time_of(msg, "revoked_at"),
        revoke_reason=msg.revoke_reason,
    )


def join_token(msg: tokens_pb2.JoinToken) -> JoinToken:
    return JoinToken(
        id=msg.id,
        agent_name=msg.agent_name,
        created_at=time_of(msg, "created_at"),
        expires_at=time_of(msg, "expires_at"),
        used_at=time_of(msg, "used_at"),
        used_by_did=msg.used_by_did,
        revoked_at=time_of(msg, "revoked_at"),
    )


def resolution(msg: agents_pb2.ResolveDIDResponse) -> Resolution:
    return Resolution(
        agent=agent(msg.agent),
        keys=tuple(key_info(k) for k in msg.keys),
        key_history=msg.key_history,
        resolved_at=time_of(msg, "resolved_at"),
    )


def trust_bundle(msg: types_pb2.TrustBundle) -> TrustBundle:
    return TrustBundle(
        trust_domain=msg.trust_domain,
        spiffe_bundle=bytes(msg.spiffe_bundle),
        x509_authorities_pem=bytes(msg.x509_authorities_pem),
        sequence=msg.sequence,
    )


def jwt_svid(msg: svid_pb2.FetchJWTSVIDResponse) -> JWTSVID:
    return JWTSVID(
        token=msg.token, spiffe_id=msg.spiffe_id, expires_at=time_of(msg, "expires_at")
    )
