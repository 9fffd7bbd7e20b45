"""The operator's client: join tokens, agents, the trust bundle, DID resolution.

Thin typed wrappers over the registry's RPCs, authenticated with the operator
credential (mTLS) that ``mesh serve`` writes into its data dir::

    DATA_DIR/bundle.pem                what the registry's serving certificate chains to
    DATA_DIR/operator/operator.pem     client certificate (spiffe://<td>/operator/admin)
    DATA_DIR/operator/operator.key     its private key
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc

from mesh.bundle import Bundle, BundleError
from mesh.client._internal import convert
from mesh.client.channel import (
    DEFAULT_REGISTRY,
    DEFAULT_TIMEOUT,
    RegistryChannel,
    RetryPolicy,
    TLSConfig,
    mtls_addresses,
    parse_addresses,
)
from mesh.client.errors import CredentialError, ResponseError
from mesh.client.rotation_types import (
    AgentRotation,
    CAAuthority,
    CAStatus,
    RotationCampaign,
    RotationState,
    RotationStatus,
)
from mesh.client.types import (
    Agent,
    AgentStatus,
    CreatedJoinToken,
    JoinToken,
    KeyInfo,
    Resolution,
    TrustBundle,
)
from mesh.did import DID
from mesh.errors import MeshError
from mesh.v1 import (
    agents_pb2,
    agents_pb2_grpc,
    rotation_pb2,
    rotation_pb2_grpc,
    svid_pb2,
    svid_pb2_grpc,
    tokens_pb2,
    tokens_pb2_grpc,
)

DEFAULT_DATA_DIR = Path(".mesh")
BUNDLE_FILE = "bundle.pem"
OPERATOR_CERT = Path("operator") / "operator.pem"
OPERATOR_KEY = Path("operator") / "operator.key"
# The registry caps a join token's lifetime at 7 days.
MAX_TOKEN_TTL = timedelta(days=7)


def operator_tls(data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR) -> TLSConfig:
    """The TLS configuration of the operator credential in a registry data dir."""
    root = Path(data_dir)
    bundle = root / BUNDLE_FILE
    if not bundle.exists():
        raise CredentialError(
            f"{bundle} does not exist",
            hint=(
                f"start the registry with `mesh serve --data-dir {root}` (it writes bundle.pem "
                "and the operator credential), or pass --data-dir"
            ),
        )
    cert, key = root / OPERATOR_CERT, root / OPERATOR_KEY
    if not cert.exists() or not key.exists():
        raise CredentialError(
            f"no operator credential in {root / 'operator'}",
            hint="run operator commands with the --data-dir of the registry (`mesh serve`)",
        )
    return TLSConfig.from_files(bundle, cert, key)


def ttl_seconds(ttl: timedelta | int | None, what: str = "ttl") -> int:
    """A lifetime as whole seconds for the wire; 0 means the registry's default."""
    if ttl is None:
        return 0
    seconds = ttl if isinstance(ttl, int) else ttl.total_seconds()
    if seconds <= 0 or seconds != int(seconds) or seconds >= 2**32:
        raise MeshError(f"{what} must be a positive whole number of seconds, got {seconds}")
    return int(seconds)


class OperatorClient:
    """Operator calls to a registry, over mTLS with the operator credential.

    ``registry`` is the registry's TLS address (as for agents); the calls go to
    its mutual-TLS address, ``mtls_registry``, by default each address's port + 1.
    """

    def __init__(
        self,
        registry: str | Sequence[str] = DEFAULT_REGISTRY,
        *,
        tls: TLSConfig,
        mtls_registry: str | Sequence[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> None:
        addresses = parse_addresses(mtls_registry) if mtls_registry else mtls_addresses(registry)
        self._channel = RegistryChannel(
            addresses, tls, timeout=timeout, retry=retry or RetryPolicy()
        )

    @classmethod
    def from_data_dir(
        cls,
        data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
        registry: str | Sequence[str] = DEFAULT_REGISTRY,
        **kwargs: Any,
    ) -> OperatorClient:
        return cls(registry, tls=operator_tls(data_dir), **kwargs)

    @property
    def channel(self) -> RegistryChannel:
        return self._channel

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> OperatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- join tokens -------------------------------------------------------------------

    def create_token(
        self, agent_name: str, ttl: timedelta | int | None = None
    ) -> CreatedJoinToken:
        """A one-time join token for ``agent_name``; ``ttl`` defaults to the registry's (10 min)."""
        request = tokens_pb2.CreateJoinTokenRequest(
            agent_name=agent_name, ttl_seconds=ttl_seconds(ttl)
        )
        timeout = self._channel.timeout
        response = self._channel.call(
            lambda ch: tokens_pb2_grpc.JoinTokenServiceStub(ch).CreateJoinToken(
                request, timeout=timeout
            )
        )
        if not response.token:
            raise ResponseError("the registry returned an empty join token")
        return CreatedJoinToken(token=response.token, info=convert.join_token(response.info))

    def list_tokens(self, include_inactive: bool = False) -> list[JoinToken]:
        request = tokens_pb2.ListJoinTokensRequest(include_inactive=include_inactive)
        timeout = self._channel.timeout
        response = self._channel.call(
            lambda ch: tokens_pb2_grpc.JoinTokenServiceStub(ch).ListJoinTokens(
                request, timeout=timeout
            )
        )
        return [convert.join_token(t) for t in response.tokens]

    def revoke_token(self, token_id: str) -> JoinToken:
        request = tokens_pb2.RevokeJoinTokenRequest(id=token_id)
        timeout = self._channel.timeout
        response = self._channel.call(
            lambda ch: tokens_pb2_grpc.JoinTokenServiceStub(ch).RevokeJoinToken(
                request, timeout=timeout
            )
        )
        return convert.join_token(response)

    # -- agents ------------------------------------------------------------------------

    def list_agents(
        self, status: AgentStatus | None = None, *, page_size: int = 500
    ) -> list[Agent]:
        """Every agent (all pages), optionally only those with ``status``."""
        proto_status = convert.STATUS_TO_PROTO[status or AgentStatus.UNSPECIFIED]
        agents: list[Agent] = []
        token = ""
        timeout = self._channel.timeout
        while True:
            request = agents_pb2.ListAgentsRequest(
                page_size=page_size, page_token=token, status=proto_status
            )
            response = self._channel.call(_list_agents_op(request, timeout))
            agents.extend(convert.agent(a) for a in response.agents)
            if not response.next_page_token:
                return agents
            if response.next_page_token == token:
                raise ResponseError("the registry returned the same page token twice")
            token = response.next_page_token

    def get_agent(self, did: str) -> Agent:
        request = agents_pb2.GetAgentRequest(did=_did(did))
        timeout = self._channel.timeout
        response = self._channel.call(
            lambda ch: agents_pb2_grpc.AgentServiceStub(ch).GetAgent(request, timeout=timeout)
        )
        return convert.agent(response)

    def revoke_agent(self, did: str, reason: str = "") -> Agent:
        """Revoke: no more SVIDs, its keys stop verifying."""
        request = agents_pb2.RevokeAgentRequest(did=_did(did), reason=reason)
        timeout = self._channel.timeout
        response = self._channel.call(
            lambda ch: agents_pb2_grpc.AgentServiceStub(ch).RevokeAgent(request, timeout=timeout)
        )
        return convert.agent(response)

    def terminate_agent(self, did: str, reason: str = "") -> Agent:
        """Kill switch: revoke and push termination to every enforcer."""
        request = agents_pb2.TerminateAgentRequest(did=_did(did), reason=reason)
        timeout = self._channel.timeout
        response = self._channel.call(
            lambda ch: agents_pb2_grpc.AgentServiceStub(ch).TerminateAgent(
                request, timeout=timeout
            )
        )
        return convert.agent(response)

    def resolve_did(self, did: str) -> Resolution:
        request = agents_pb2.ResolveDIDRequest(did=_did(did))
        timeout = self._channel.timeout
        response = self._channel.call(
            lambda ch: agents_pb2_grpc.AgentServiceStub(ch).ResolveDID(request, timeout=timeout)
        )
        return convert.resolution(response)

    # -- bundle ------------------------------------------------------------------------

    def trust_bundle(self) -> TrustBundle:
        """The registry's current trust bundle, checked to parse as a SPIFFE bundle."""
        return fetch_trust_bundle(self._channel)

    # -- rotation ----------------------------------------------------------------------

    def _keys(self, name: str, request: Any) -> Any:
        timeout = self._channel.timeout
        return self._channel.call(
            lambda ch: getattr(rotation_pb2_grpc.KeyServiceStub(ch), name)(
                request, timeout=timeout
            )
        )

    def request_rotation(self, did: str, reason: str = "") -> RotationCampaign:
        """Ask one running agent to rotate its identity key now (an event on its stream)."""
        request = rotation_pb2.RequestRotationRequest(did=_did(did), reason=reason)
        return _campaign(self._keys("RequestRotation", request))

    def request_rotation_all(
        self, older_than: timedelta | None = None, reason: str = ""
    ) -> RotationCampaign:
        """Ask every active agent whose key is older than ``older_than`` (None: all) to rotate."""
        seconds = 0 if older_than is None else ttl_seconds(older_than, "older_than")
        request = rotation_pb2.RequestRotationAllRequest(older_than_seconds=seconds, reason=reason)
        return _campaign(self._keys("RequestRotationAll", request))

    def rotation_status(self, campaign_id: str, *, include_agents: bool = False) -> RotationStatus:
        request = rotation_pb2.GetRotationStatusRequest(
            campaign_id=campaign_id, include_agents=include_agents
        )
        r = self._keys("GetRotationStatus", request)
        states = {
            rotation_pb2.ROTATION_STATE_PENDING: RotationState.PENDING,
            rotation_pb2.ROTATION_STATE_ROTATED: RotationState.ROTATED,
            rotation_pb2.ROTATION_STATE_FAILED: RotationState.FAILED,
        }
        return RotationStatus(
            campaign_id=r.campaign_id,
            requested=r.requested,
            rotated=r.rotated,
            pending=r.pending,
            failed=r.failed,
            agents=tuple(
                AgentRotation(
                    did=a.did,
                    state=states.get(a.state, RotationState.PENDING),
                    requested_kid=a.requested_kid,
                    current_kid=a.current_kid,
                    detail=a.detail,
                )
                for a in r.agents
            ),
        )

    def mark_key_compromised(
        self,
        did: str,
        *,
        kid: str = "",
        at: datetime | None = None,
        reason: str = "",
    ) -> KeyInfo:
        """Signatures by the key (default: the current one) at or after ``at`` (default: now)
        are rejected at once; the agent gets no SVID until it rotates."""
        request = rotation_pb2.MarkKeyCompromisedRequest(did=_did(did), kid=kid, reason=reason)
        if at is not None:
            if at.tzinfo is None:
                raise MeshError("the compromise time must be timezone-aware (UTC)")
            request.compromised_at.FromDatetime(at.astimezone(UTC))
        return convert.key_info(self._keys("MarkKeyCompromised", request))

    def rotate_ca(self, *, activate: bool = False, force: bool = False) -> CAStatus:
        """Prepare the next CA now; with ``activate``, make it sign (see docs/rotation.md)."""
        request = rotation_pb2.RotateCARequest(activate=activate, force=force)
        timeout = self._channel.timeout
        return _ca_status(
            self._channel.call(
                lambda ch: rotation_pb2_grpc.CAServiceStub(ch).RotateCA(request, timeout=timeout)
            )
        )

    def ca_status(self) -> CAStatus:
        request = rotation_pb2.GetCAStatusRequest()
        timeout = self._channel.timeout
        return _ca_status(
            self._channel.call(
                lambda ch: rotation_pb2_grpc.CAServiceStub(ch).GetCAStatus(
                    request, timeout=timeout
                )
            )
        )


def _campaign(r: Any) -> RotationCampaign:
    return RotationCampaign(
        id=r.id, requested=r.requested, requested_at=convert.time_of(r, "requested_at")
    )


def _ca_status(r: Any) -> CAStatus:
    return CAStatus(
        authorities=tuple(
            CAAuthority(
                kind=a.kind,
                id=a.id,
                state=a.state,
                not_before=convert.time_of(a, "not_before"),
                not_after=convert.time_of(a, "not_after"),
            )
            for a in r.authorities
        ),
        sequence=r.sequence,
        next_change_at=convert.time_of(r, "next_change_at"),
        next_change=r.next_change,
        changes=tuple(r.changes),
    )


def fetch_trust_bundle(channel: RegistryChannel) -> TrustBundle:
    timeout = channel.timeout
    response = channel.call(
        lambda ch: svid_pb2_grpc.SVIDServiceStub(ch).GetTrustBundle(
            svid_pb2.GetTrustBundleRequest(), timeout=timeout
        )
    )
    bundle = convert.trust_bundle(response)
    check_bundle(bundle)
    return bundle


def check_bundle(bundle: TrustBundle) -> Bundle:
    """Parse the SPIFFE bundle and check its PEM holds the same X.509 authorities."""
    try:
        parsed = Bundle.parse(bundle.spiffe_bundle, bundle.trust_domain)
    except (BundleError, MeshError) as exc:
        raise ResponseError(f"the registry sent an invalid trust bundle: {exc}") from None
    if not parsed.x509_authorities:
        raise ResponseError("the registry's trust bundle has no X.509 authority")
    try:
        pem_bundle = Bundle.from_x509_pem(bundle.trust_domain, bundle.x509_authorities_pem)
    except (BundleError, MeshError) as exc:
        raise ResponseError(f"the registry sent invalid bundle PEM: {exc}") from None
    if set(pem_bundle.x509_authorities) != set(parsed.x509_authorities):
        raise ResponseError(
            "the registry's bundle PEM and SPIFFE bundle list different X.509 authorities"
        )
    return parsed


def _list_agents_op(request: Any, timeout: float) -> Callable[[grpc.Channel], Any]:
    def op(ch: grpc.Channel) -> Any:
        return agents_pb2_grpc.AgentServiceStub(ch).ListAgents(request, timeout=timeout)

    return op


def _did(text: str) -> str:
    """Check a DID locally, for a precise error before any network call."""
    return str(DID.parse(text))
