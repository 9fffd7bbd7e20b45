"""JoinTokenService: one-time join tokens (operators only).

The secret is 256 random bits, shown once in CreateJoinTokenResponse; the
store keeps only its SHA-256. Creating and revoking are audited.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from mesh.v1 import tokens_pb2, tokens_pb2_grpc
from registry.interceptor import current_principal
from registry.services import _validate as check
from registry.services._runtime import Runtime, timestamp
from registry.status import invalid, not_found
from registry.store.records import JoinTokenRecord
from registry.store.repos.tokens import hash_token

TOKEN_PREFIX = "mjt."  # noqa: S105 - a label, not a secret


def new_secret() -> str:
    # "mjt." marks what the string is (and keeps a leading '-' away from CLI parsers).
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_pb(record: JoinTokenRecord) -> tokens_pb2.JoinToken:
    message = tokens_pb2.JoinToken(
        id=record.id,
        agent_name=record.agent_name,
        created_at=timestamp(record.created_at),
        expires_at=timestamp(record.expires_at),
        used_by_did=record.used_by_did or "",
    )
    if record.used_at is not None:
        message.used_at.CopyFrom(timestamp(record.used_at))
    if record.revoked_at is not None:
        message.revoked_at.CopyFrom(timestamp(record.revoked_at))
    return message


class JoinTokenService(tokens_pb2_grpc.JoinTokenServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._default_ttl = runtime.config.join_token_default_ttl_seconds
        self._max_ttl = runtime.config.join_token_max_ttl_seconds

    async def CreateJoinToken(
        self, request: tokens_pb2.CreateJoinTokenRequest, context: Any
    ) -> tokens_pb2.CreateJoinTokenResponse:
        name = check.agent_name("agent_name", request.agent_name)
        ttl = request.ttl_seconds or self._default_ttl
        if ttl > self._max_ttl:
            raise invalid(
                "ttl_seconds", f"is {ttl}; a join token lives at most {self._max_ttl} seconds"
            )
        actor = current_principal().actor
        return await self._rt.run(self._create, name, ttl, actor)

    def _create(self, name: str, ttl: int, actor: str) -> tokens_pb2.CreateJoinTokenResponse:
        secret = new_secret()
        expires_at = datetime.now(UTC) + timedelta(seconds=ttl)
        with self._rt.store.transaction() as tx:
            record = tx.tokens.create(
                token_hash=hash_token(secret),
                agent_name=name,
                created_by=actor,
                expires_at=expires_at,
                token_id=secrets.token_hex(16),
            )
            tx.audit.append(
                actor,
                "join_token.create",
                record.id,
                {"agent_name": name, "expires_at": expires_at.isoformat()},
            )
        return tokens_pb2.CreateJoinTokenResponse(token=secret, info=token_pb(record))

    async def ListJoinTokens(
        self, request: tokens_pb2.ListJoinTokensRequest, context: Any
    ) -> tokens_pb2.ListJoinTokensResponse:
        return await self._rt.run(self._list, request.include_inactive)

    def _list(self, include_inactive: bool) -> tokens_pb2.ListJoinTokensResponse:
        with self._rt.store.read() as view:
            records = view.tokens.list(usable_only=not include_inactive)
        return tokens_pb2.ListJoinTokensResponse(tokens=[token_pb(r) for r in records])

    async def RevokeJoinToken(
        self, request: tokens_pb2.RevokeJoinTokenRequest, context: Any
    ) -> tokens_pb2.JoinToken:
        token_id = check.token_id("id", request.id)
        actor = current_principal().actor
        return await self._rt.run(self._revoke, token_id, actor)

    def _revoke(self, token_id: str, actor: str) -> tokens_pb2.JoinToken:
        with self._rt.store.transaction() as tx:
            if tx.tokens.find(token_id) is None:
                raise not_found(f"id: no join token {token_id}")
            record = tx.tokens.revoke(token_id)
            tx.audit.append(actor, "join_token.revoke", token_id, {"agent_name": record.agent_name})
        return token_pb(record)
