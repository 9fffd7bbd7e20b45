"""Authentication: who is calling, from the client certificate grpc.aio verified.

The TLS layer has already checked the peer's chain against the trust bundle
(client certificates are requested but optional, so Register works without
one). Here the certificate's one URI SAN decides the principal:

* ``spiffe://<td>/agent/<id>`` -> an agent. It must be registered; its
  certificate serial must be an SVID the registry issued to that agent. A
  revoked or terminated agent is recognised but cannot act (FAILED_PRECONDITION
  from :mod:`registry.authz`), so it learns why instead of a bare denial.
* ``spiffe://<td>/operator/<name>`` -> an operator whose principal record is
  not revoked.
* ``spiffe://<td>/reporter/<name>`` and ``spiffe://<td>/enforcer/<name>`` -> a
  reporter (reports trust signals) or an enforcer (watches every agent), each
  a principal record an operator created (``mesh principal create``), not revoked.
* no certificate -> anonymous.

Anything else (another trust domain, an unknown path, a revoked operator, an
SVID serial not issued to that agent) is UNAUTHENTICATED.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock
from typing import Any

import grpc
from cryptography import x509

from mesh.errors import InvalidIdentifier
from mesh.spiffeid import SpiffeID, TrustDomain, did_from_agent_spiffe_id
from registry.status import unauthenticated
from registry.store.errors import NotFound

OPERATOR_SEGMENT = "operator"
AGENT_SEGMENT = "agent"
REPORTER_SEGMENT = "reporter"
ENFORCER_SEGMENT = "enforcer"


class PrincipalKind(enum.Enum):
    ANONYMOUS = "anonymous"
    AGENT = "agent"
    OPERATOR = "operator"
    REPORTER = "reporter"
    ENFORCER = "enforcer"


@dataclass(frozen=True, slots=True)
class Principal:
    kind: PrincipalKind
    spiffe_id: str = ""
    # Agents: their DID and current status ("active", "revoked", "terminated").
    did: str = ""
    status: str = ""
    # Operators: their name (the last path segment).
    name: str = ""
    # Hex serial of the presented certificate.
    serial: str = ""

    @property
    def actor(self) -> str:
        """How the audit trail names this caller."""
        return self.spiffe_id or "anonymous"


ANONYMOUS = Principal(PrincipalKind.ANONYMOUS)


@dataclass(frozen=True, slots=True)
class _Peer:
    spiffe_id: SpiffeID
    serial: str


class Authenticator:
    """Maps a verified client certificate to a :class:`Principal` (store lookups in a thread)."""

    def __init__(self, trust_domain: TrustDomain, store: Any, run_in_thread: Any) -> None:
        self._td = trust_domain
        self._store = store
        self._run = run_in_thread
        # Parsed certificates by PEM: the same SVID calls many times over one channel.
        self._cache: OrderedDict[bytes, _Peer] = OrderedDict()
        self._cache_lock = Lock()

    async def authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
        pems = context.auth_context().get("x509_pem_cert")
        if not pems:
            return ANONYMOUS
        peer = self._peer(pems[0])
        segments = peer.spiffe_id.segments
        if len(segments) == 2 and segments[0] == AGENT_SEGMENT:
            return await self._run(self._agent, peer)  # type: ignore[no-any-return]
        if len(segments) == 2 and segments[0] == OPERATOR_SEGMENT:
            return await self._run(self._operator, peer)  # type: ignore[no-any-return]
        if len(segments) == 2 and segments[0] in (REPORTER_SEGMENT, ENFORCER_SEGMENT):
            return await self._run(self._service_principal, peer)  # type: ignore[no-any-return]
        raise unauthenticated(
            f"{peer.spiffe_id} is neither an agent nor an operator of {self._td.name}"
        )

    def _peer(self, pem: bytes) -> _Peer:
        with self._cache_lock:
            cached = self._cache.get(pem)
            if cached is not None:
                self._cache.move_to_end(pem)
                return cached
        peer = self._parse(pem)
        with self._cache_lock:
            self._cache[pem] = peer
            if len(self._cache) > 4096:
                self._cache.popitem(last=False)
        return peer

    def _parse(self, pem: bytes) -> _Peer:
        try:
            cert = x509.load_pem_x509_certificate(pem)
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (ValueError, x509.ExtensionNotFound):
            raise unauthenticated("the client certificate has no SPIFFE ID") from None
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        if len(uris) != 1:
            raise unauthenticated("the client certificate must carry exactly one URI SAN")
        try:
            sid = SpiffeID.parse(uris[0])
        except InvalidIdentifier as exc:
            raise unauthenticated(f"the client certificate's URI SAN: {exc}") from None
        if not sid.member_of(self._td):
            raise unauthenticated(f"{sid} is not in trust domain {self._td.name}")
        return _Peer(sid, format(cert.serial_number, "x"))

    def _agent(self, peer: _Peer) -> Principal:
        try:
            did = did_from_agent_spiffe_id(peer.spiffe_id)
        except InvalidIdentifier as exc:
            raise unauthenticated(str(exc)) from None
        with self._store.read() as tx:
            agent = tx.agents.find(str(did))
            try:
                svid = tx.svids.get(peer.serial)
            except NotFound:
                svid = None
        if agent is None:
            raise unauthenticated(f"{peer.spiffe_id} is not a registered agent")
        if svid is None or svid.did != agent.did:
            raise unauthenticated(
                f"certificate serial {peer.serial} was not issued to {agent.did}; "
                "use the SVID the registry issued"
            )
        return Principal(
            PrincipalKind.AGENT,
            spiffe_id=str(peer.spiffe_id),
            did=agent.did,
            status=agent.status,
            serial=peer.serial,
        )

    def _operator(self, peer: _Peer) -> Principal:
        name = peer.spiffe_id.segments[1]
        with self._store.read() as tx:
            record = tx.principals.find_by_name("operator", name)
        if record is None:
            raise unauthenticated(f"{peer.spiffe_id} is not a known operator")
        if record.revoked_at is not None:
            raise unauthenticated(f"operator {name} was revoked")
        return Principal(
            PrincipalKind.OPERATOR, spiffe_id=str(peer.spiffe_id), name=name, serial=peer.serial
        )

    def _service_principal(self, peer: _Peer) -> Principal:
        kind, name = peer.spiffe_id.segments
        with self._store.read() as view:
            record = view.principals.find_by_name(kind, name)
        if record is None:
            raise unauthenticated(f"{peer.spiffe_id} is not a known {kind}")
        if record.revoked_at is not None:
            raise unauthenticated(f"{kind} {name} was revoked")
        return Principal(
            PrincipalKind(kind), spiffe_id=str(peer.spiffe_id), name=name, serial=peer.serial
        )
