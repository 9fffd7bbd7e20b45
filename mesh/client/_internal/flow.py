"""The steps of registration and renewal that do not depend on sync or async transport.

Build requests, check what the registry returned (DID, SPIFFE ID, SVID chain
against the bundle, the leaf's key is the one we made), and commit it to the
agent directory. Nothing here talks to the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mesh.agentdir import AgentDir, AgentInfo
from mesh.bundle import Bundle, BundleError
from mesh.client.errors import ResponseError
from mesh.client.types import Registration
from mesh.errors import MeshError
from mesh.keyhistory import KeyHistory
from mesh.keys import IdentityKey
from mesh.registration import sign_proof
from mesh.spiffeid import TrustDomain, agent_spiffe_id
from mesh.svid import X509SVID, verify_x509svid
from mesh.v1 import registration_pb2


def new_svid_key() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A fresh P-256 key and its CSR (DER). Empty subject: the registry sets the URI SAN."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(
        key, hashes.SHA256()
    )
    return key, csr.public_bytes(serialization.Encoding.DER)


def check_challenge_domain(challenge: Any, expected: str | None) -> str:
    """The challenge's trust domain, refusing one other than the agent expects."""
    try:
        td = str(TrustDomain.parse(challenge.trust_domain))
    except MeshError as exc:
        raise ResponseError(
            f"the registry's challenge names an invalid trust domain: {exc}"
        ) from None
    if expected is not None and td != expected:
        raise ResponseError(
            f"the registry is in trust domain {td}, but this agent belongs to {expected}",
            hint="check --registry; an agent directory belongs to one trust domain",
        )
    if not challenge.nonce:
        raise ResponseError("the registry's challenge has no nonce")
    return td


def register_request(
    key: IdentityKey,
    trust_domain: str,
    challenge: Any,
    csr_der: bytes,
    *,
    join_token: str | None,
    key_history: str,
    metadata: Mapping[str, str] | None,
) -> registration_pb2.RegisterRequest:
    proof = sign_proof(key, trust_domain, bytes(challenge.nonce), csr_der)
    return registration_pb2.RegisterRequest(
        join_token=join_token or "",
        public_key=key.public_key,
        challenge=bytes(challenge.nonce),
        proof=proof,
        csr=csr_der,
        metadata=dict(metadata or {}),
        key_history=key_history,
    )


def history_to_send(history: KeyHistory | None, join_token: str | None) -> str:
    """First registration sends the self-signed inception history; re-registration sends none."""
    if join_token and history is not None and len(history) == 1:
        return history.to_json()
    return ""


@dataclass(frozen=True)
class Accepted:
    """A validated SVID and bundle, ready to be written."""

    svid: X509SVID
    bundle: Bundle
    bundle_pem: bytes
    key_pem: bytes = field(repr=False)


def accept(
    svid_msg: Any,
    bundle_msg: Any,
    key: ec.EllipticCurvePrivateKey,
    *,
    expected_spiffe_id: str,
    now: datetime | None = None,
) -> Accepted:
    """Check an SVID and bundle from the registry before anything is written to disk."""
    td = str(bundle_msg.trust_domain)
    try:
        bundle = Bundle.parse(bytes(bundle_msg.spiffe_bundle), td)
    except (BundleError, MeshError) as exc:
        raise ResponseError(f"the registry sent an invalid trust bundle: {exc}") from None
    if not bundle.x509_authorities:
        raise ResponseError("the registry's trust bundle has no X.509 authority")
    try:
        certs = [x509.load_der_x509_certificate(bytes(der)) for der in svid_msg.cert_chain]
    except ValueError as exc:
        raise ResponseError(f"the registry sent an SVID that does not parse: {exc}") from None
    if not certs:
        raise ResponseError("the registry sent an empty SVID chain")
    try:
        svid = X509SVID.from_chain(certs, key)
        spiffe_id = verify_x509svid(svid, bundle, now or datetime.now(UTC))
    except MeshError as exc:
        raise ResponseError(f"the registry sent an SVID that does not validate: {exc}") from None
    if str(spiffe_id) != expected_spiffe_id:
        raise ResponseError(
            f"the registry issued an SVID for {spiffe_id}, expected {expected_spiffe_id}"
        )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Accepted(svid=svid, bundle=bundle, bundle_pem=bundle.x509_pem(), key_pem=key_pem)


def expected_did(
    key: IdentityKey, history: KeyHistory | None, info: AgentInfo | None
) -> str:
    """The DID the registry must answer with: the one the directory already names."""
    if info is not None:
        return info.did
    if history is not None:
        return str(history.did)
    return str(key.did())


def check_registration(response: Any, did: str, trust_domain: str) -> str:
    """The agent's SPIFFE ID, after checking the DID and SPIFFE ID of a RegisterResponse."""
    if response.did != did:
        raise ResponseError(
            f"the registry answered for {response.did or 'no DID'}, expected {did}",
            hint="the registry does not hold this agent's identity as this directory does",
        )
    spiffe_id = str(agent_spiffe_id(trust_domain, did))
    if response.spiffe_id != spiffe_id:
        raise ResponseError(f"the registry named {response.spiffe_id}, expected {spiffe_id}")
    if response.bundle.trust_domain != trust_domain:
        raise ResponseError(
            f"the registry sent the bundle of {response.bundle.trust_domain}, "
            f"expected {trust_domain}"
        )
    return spiffe_id


def commit(
    agent_dir: AgentDir, accepted: Accepted, info: AgentInfo, *, created: bool
) -> Registration:
    """Write bundle, SVID, then agent.json: each file is replaced atomically."""
    agent_dir.write_bundle(accepted.bundle_pem)
    agent_dir.write_svid(accepted.svid.chain_pem(), accepted.key_pem)
    agent_dir.write_info(info)
    return registration_of(accepted.svid, info, created=created, sequence=accepted.bundle.sequence)


def registration_of(
    svid: X509SVID, info: AgentInfo, *, created: bool, sequence: int
) -> Registration:
    return Registration(
        did=info.did,
        spiffe_id=info.spiffe_id,
        trust_domain=info.trust_domain,
        created=created,
        serial_number=svid.leaf.serial_number,
        not_before=svid.issued_at,
        not_after=svid.expires_at,
        bundle_sequence=sequence,
    )
