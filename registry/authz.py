"""Authorisation: one table, every RPC, one rule each (docs/authorization.md).

:data:`RULES` maps each full method name the server serves to its rule; the
server's interceptor (:mod:`registry.interceptor`) looks the method up and
calls :func:`authorize` before any service code runs. A method missing from
the table is refused: a new RPC cannot ship without a written rule.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from registry.auth import Principal, PrincipalKind
from registry.status import RpcError, denied, precondition, unauthenticated


class Rule(enum.Enum):
    PUBLIC = "public"
    """Anyone, with or without a client certificate."""
    AUTHENTICATED = "authenticated"
    """Any authenticated agent or operator."""
    AGENT_SELF = "agent-self"
    """An authenticated agent, acting on itself only (the RPC takes no target)."""
    OPERATOR = "operator"
    """An authenticated operator."""
    OPERATOR_OR_SELF = "operator-or-self"
    """An operator, or the agent named by the request's ``did`` field."""
    REPORTER = "reporter"
    """A reporter (``spiffe://<td>/reporter/<name>``); never an agent."""
    OBSERVER_OR_SELF = "observer-or-self"
    """An operator or enforcer, or the agent named by the request's ``did`` field."""
    WATCHER = "watcher"
    """An operator or enforcer (everything), or an agent (itself only: the service
    narrows its filters to its own DID and refuses any other)."""


#: Request field naming the target agent, for OPERATOR_OR_SELF.
TARGET_FIELD = "did"

RULES: Mapping[str, Rule] = {
    # Registration: the join token or the agent's key authenticates the request itself.
    "/mesh.v1.RegistrationService/GetChallenge": Rule.PUBLIC,
    "/mesh.v1.RegistrationService/Register": Rule.PUBLIC,
    # SVIDs.
    "/mesh.v1.SVIDService/RenewX509SVID": Rule.AGENT_SELF,
    "/mesh.v1.SVIDService/FetchJWTSVID": Rule.AGENT_SELF,
    "/mesh.v1.SVIDService/GetTrustBundle": Rule.PUBLIC,
    # Agents.
    "/mesh.v1.AgentService/ResolveDID": Rule.AUTHENTICATED,
    "/mesh.v1.AgentService/GetAgent": Rule.OPERATOR_OR_SELF,
    "/mesh.v1.AgentService/ListAgents": Rule.OPERATOR,
    "/mesh.v1.AgentService/RevokeAgent": Rule.OPERATOR_OR_SELF,
    "/mesh.v1.AgentService/TerminateAgent": Rule.OPERATOR,
    # Join tokens.
    "/mesh.v1.JoinTokenService/CreateJoinToken": Rule.OPERATOR,
    "/mesh.v1.JoinTokenService/ListJoinTokens": Rule.OPERATOR,
    "/mesh.v1.JoinTokenService/RevokeJoinToken": Rule.OPERATOR,
    # Trust.
    "/mesh.v1.TrustService/ReportSignals": Rule.REPORTER,
    "/mesh.v1.TrustService/GetTrustReport": Rule.OBSERVER_OR_SELF,
    "/mesh.v1.TrustService/Recompute": Rule.OPERATOR,
    "/mesh.v1.TrustService/GrantRing": Rule.OPERATOR,
    # Events.
    "/mesh.v1.EventService/Watch": Rule.WATCHER,
    # Message verification for thin clients.
    "/mesh.v1.VerifyService/Verify": Rule.AUTHENTICATED,
    "/mesh.v1.VerifyService/VerifyBatch": Rule.AUTHENTICATED,
    # Credential rotation (docs/rotation.md). RotateKey: over mTLS an agent rotates only
    # itself; without a certificate the history's signatures by the current and next key
    # authenticate it (as a key authenticates re-registration).
    "/mesh.v1.KeyService/RotateKey": Rule.PUBLIC,
    "/mesh.v1.KeyService/MarkKeyCompromised": Rule.OPERATOR,
    "/mesh.v1.KeyService/RequestRotation": Rule.OPERATOR,
    "/mesh.v1.KeyService/RequestRotationAll": Rule.OPERATOR,
    "/mesh.v1.KeyService/GetRotationStatus": Rule.OPERATOR,
    "/mesh.v1.CAService/RotateCA": Rule.OPERATOR,
    "/mesh.v1.CAService/GetCAStatus": Rule.OPERATOR,
    # Standard services.
    "/grpc.health.v1.Health/Check": Rule.PUBLIC,
    "/grpc.health.v1.Health/Watch": Rule.PUBLIC,
    "/grpc.health.v1.Health/List": Rule.PUBLIC,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Rule.PUBLIC,
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": Rule.PUBLIC,
}


def rule_for(method: str) -> Rule | None:
    return RULES.get(method)


def unlisted(method: str) -> RpcError:
    return denied(f"{method} has no authorisation rule; it is refused to everyone")


def authorize(rule: Rule, principal: Principal, request: Any) -> None:
    """Raise the precise :class:`RpcError` when ``principal`` may not make this call."""
    if rule is Rule.PUBLIC:
        return
    if principal.kind is PrincipalKind.ANONYMOUS:
        raise unauthenticated(
            "this call needs a client certificate: call the registry's mutual-TLS address "
            "(mtls_listen; by default the listen port + 1) with an agent's X.509-SVID or an "
            "operator credential"
        )
    if principal.kind is PrincipalKind.AGENT and principal.status != "active":
        raise precondition(
            f"agent {principal.did} is {principal.status}; it can no longer act "
            "(an operator must register a new identity for it)"
        )
    if rule is Rule.AUTHENTICATED:
        return
    if rule is Rule.AGENT_SELF:
        if principal.kind is not PrincipalKind.AGENT:
            raise denied("only an agent (with its X.509-SVID) can make this call, for itself")
        return
    if rule is Rule.OPERATOR:
        if principal.kind is not PrincipalKind.OPERATOR:
            raise denied("this call is for operators only")
        return
    if rule is Rule.OPERATOR_OR_SELF:
        if principal.kind is PrincipalKind.OPERATOR:
            return
        target = getattr(request, TARGET_FIELD, None)
        if principal.kind is PrincipalKind.AGENT and target == principal.did:
            return
        raise denied(
            f"an agent may make this call only for itself ({principal.did}); "
            "other agents need an operator"
        )
    if rule is Rule.REPORTER:
        if principal.kind is not PrincipalKind.REPORTER:
            raise denied(
                "only a reporter may report trust signals (an operator creates one with "
                "`mesh principal create --kind reporter`); agents never report"
            )
        return
    if rule is Rule.OBSERVER_OR_SELF:
        if principal.kind in (PrincipalKind.OPERATOR, PrincipalKind.ENFORCER):
            return
        target = getattr(request, TARGET_FIELD, None)
        if principal.kind is PrincipalKind.AGENT and target == principal.did:
            return
        raise denied(
            "only operators, enforcers, or the agent itself may read an agent's trust report"
        )
    if rule is Rule.WATCHER:
        if principal.kind in (PrincipalKind.OPERATOR, PrincipalKind.ENFORCER, PrincipalKind.AGENT):
            return
        raise denied("only operators, enforcers and agents (for themselves) may watch events")
    raise denied(f"unknown rule {rule}")  # pragma: no cover - the enum is exhaustive
