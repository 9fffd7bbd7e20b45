"""End to end over real TLS: register -> renew -> JWT-SVID -> resolve -> revoke,
on SQLite and on PostgreSQL, with every SVID checked by independent code."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import grpc
import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store
from fixtures_registry import TRUST_DOMAIN, RunningRegistry, make_csr
from joserfc import jwt
from joserfc.jwk import KeySet

from mesh.bundle import Bundle
from mesh.keyhistory import KeyHistory
from mesh.keys import IdentityKey
from mesh.svid import parse_and_validate_jwt_svid, verify_x509svid
from mesh.v1 import agents_pb2, registration_pb2, svid_pb2, types_pb2


def _verify_with_cryptography(chain_der: list[bytes], bundle_pem: bytes) -> x509.Certificate:
    """cryptography's own path builder against the bundle: no trustmesh code involved."""
    anchors = x509.load_pem_x509_certificates(bundle_pem)
    leaf = x509.load_der_x509_certificate(chain_der[0])
    intermediates = [x509.load_der_x509_certificate(d) for d in chain_der[1:]]
    verifier = PolicyBuilder().store(Store(anchors)).build_client_verifier()
    verified = verifier.verify(leaf, intermediates)
    uris = [str(u.value) for u in verified.subjects or []]
    assert len(uris) == 1 and uris[0].startswith(f"spiffe://{TRUST_DOMAIN}/agent/")
    return leaf


def _check_svid(registry: RunningRegistry, svid: types_pb2.X509SVID, spiffe_id: str) -> None:
    leaf = _verify_with_cryptography(list(svid.cert_chain), registry.bundle_pem)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [spiffe_id]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert svid.spiffe_id == spiffe_id
    assert svid.expires_at.ToDatetime(UTC) == leaf.not_valid_after_utc
    bundle = Bundle.from_x509_pem(TRUST_DOMAIN, registry.bundle_pem)
    chain = [x509.load_der_x509_certificate(d) for d in svid.cert_chain]
    assert str(verify_x509svid(chain, bundle)) == spiffe_id


def test_register_renew_jwt_resolve_revoke(any_registry: RunningRegistry) -> None:
    registry = any_registry
    identity = IdentityKey.generate()
    agent = registry.register("flow/worker-1", identity=identity, metadata={"team": "billing"})
    response = agent.response
    assert response.created
    assert response.did == str(identity.did())
    assert response.spiffe_id == f"spiffe://{TRUST_DOMAIN}/agent/{identity.did().id}"
    _check_svid(registry, response.svid, response.spiffe_id)
    assert response.bundle.trust_domain == TRUST_DOMAIN
    assert response.bundle.x509_authorities_pem == registry.bundle_pem
    assert KeyHistory.from_json(response.key_history).current.kid == identity.kid

    channel = agent.channel()
    svids = registry.svids(channel)

    # Renew with a fresh key: a new certificate for the same SPIFFE ID.
    _, csr = make_csr()
    renewed = svids.RenewX509SVID(svid_pb2.RenewX509SVIDRequest(csr=csr))
    _check_svid(registry, renewed.svid, response.spiffe_id)
    assert renewed.svid.cert_chain[0] != response.svid.cert_chain[0]

    # JWT-SVID: checked with joserfc against the bundle's JWKS, and with mesh.svid.
    fetched = svids.FetchJWTSVID(svid_pb2.FetchJWTSVIDRequest(audience=["payments"]))
    assert fetched.spiffe_id == response.spiffe_id
    document = json.loads(renewed.bundle.spiffe_bundle)
    jwks = KeySet.import_key_set(
        {
            "keys": [
                {n: v for n, v in k.items() if n != "use"}
                for k in document["keys"]
                if k.get("use") == "jwt-svid"
            ]
        }
    )
    token = jwt.decode(fetched.token, jwks, algorithms=["ES256"])
    assert token.header["alg"] == "ES256" and token.header["kid"]
    assert token.claims["sub"] == response.spiffe_id
    assert token.claims["aud"] in (["payments"], "payments")
    assert token.claims["exp"] == int(fetched.expires_at.seconds)
    assert 0 < token.claims["exp"] - token.claims["iat"] <= 300
    bundle = Bundle.parse(renewed.bundle.spiffe_bundle, TRUST_DOMAIN)
    validated = parse_and_validate_jwt_svid(fetched.token, bundle, "payments")
    assert str(validated.spiffe_id) == response.spiffe_id

    # Resolve (any authenticated caller): status, keys and the signed history.
    resolved = registry.agents(registry.operator()).ResolveDID(
        agents_pb2.ResolveDIDRequest(did=response.did)
    )
    assert resolved.agent.status == types_pb2.AGENT_STATUS_ACTIVE
    assert resolved.agent.name == "flow/worker-1"
    assert dict(resolved.agent.metadata) == {"team": "billing"}
    assert [k.kid for k in resolved.keys] == [identity.kid]
    assert resolved.keys[0].public_key == identity.public_key
    assert KeyHistory.from_json(resolved.key_history).did == identity.did()

    # Revoke itself: from then on it cannot renew or fetch.
    revoked = registry.agents(channel).RevokeAgent(
        agents_pb2.RevokeAgentRequest(did=response.did, reason="decommissioned")
    )
    assert revoked.status == types_pb2.AGENT_STATUS_REVOKED
    assert revoked.revoke_reason == "decommissioned"
    with pytest.raises(grpc.RpcError) as err:
        svids.RenewX509SVID(svid_pb2.RenewX509SVIDRequest(csr=make_csr()[1]))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as err:
        svids.FetchJWTSVID(svid_pb2.FetchJWTSVIDRequest(audience=["payments"]))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    # Events and audit rows were written with the changes. The scheduler may
    # score the new agent meanwhile: its trust.* events are not this test's.
    with registry.store.read() as view:
        events = [
            e
            for e in view.events.since(0, limit=10_000)
            if e.agent_did == response.did and e.type.startswith("agent.")
        ]
    assert [e.type for e in events] == ["agent.registered", "agent.revoked"]
    with registry.store.read() as view:
        rows = [r for r in view.audit.rows(limit=10_000) if r.subject == response.did]
    assert [r.action for r in rows] == ["agent.register", "agent.revoke"]


def test_retry_and_reregistration(any_registry: RunningRegistry) -> None:
    registry = any_registry
    identity = IdentityKey.generate()
    token = registry.join_token("flow/retry")
    first, _ = registry.register_request(identity, token)
    created = registry.registration().Register(first)
    assert created.created

    # The same key retrying with the same token: same DID, not created, a fresh SVID.
    again, _ = registry.register_request(identity, token)
    retried = registry.registration().Register(again)
    assert (retried.did, retried.created) == (created.did, False)
    assert retried.svid.cert_chain[0] != created.svid.cert_chain[0]

    # Another key with the used token: refused.
    other, _ = registry.register_request(IdentityKey.generate(), token)
    with pytest.raises(grpc.RpcError) as err:
        registry.registration().Register(other)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "already used" in str(err.value.details())

    # Re-registration after a restart: no token, the current key.
    rereg, _ = registry.register_request(identity, "")
    fresh = registry.registration().Register(rereg)
    assert (fresh.did, fresh.created) == (created.did, False)
    _check_svid(registry, fresh.svid, fresh.spiffe_id)

    # A replayed challenge is refused, whatever else is right.
    with pytest.raises(grpc.RpcError) as err:
        registry.registration().Register(rereg)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "challenge" in str(err.value.details())


def test_list_and_terminate(any_registry: RunningRegistry) -> None:
    registry = any_registry
    operator = registry.agents(registry.operator())
    dids = {registry.register("flow/list").did for _ in range(3)}
    seen: set[str] = set()
    page_token = ""
    while True:
        page = operator.ListAgents(
            agents_pb2.ListAgentsRequest(page_size=2, page_token=page_token)
        )
        assert len(page.agents) <= 2
        seen.update(a.did for a in page.agents)
        page_token = page.next_page_token
        if not page_token:
            break
    assert dids <= seen
    victim = sorted(dids)[0]
    terminated = operator.TerminateAgent(
        agents_pb2.TerminateAgentRequest(did=victim, reason="kill switch")
    )
    assert terminated.status == types_pb2.AGENT_STATUS_TERMINATED
    only = operator.ListAgents(
        agents_pb2.ListAgentsRequest(status=types_pb2.AGENT_STATUS_TERMINATED, page_size=1000)
    )
    assert victim in {a.did for a in only.agents}
    assert all(a.status == types_pb2.AGENT_STATUS_TERMINATED for a in only.agents)
    # Terminated is final.
    with pytest.raises(grpc.RpcError) as err:
        operator.RevokeAgent(agents_pb2.RevokeAgentRequest(did=victim, reason="again"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_register_without_history_and_start_up_files(registry: RunningRegistry) -> None:
    agent = registry.register("flow/nohistory", with_history=False)
    assert agent.response.created and agent.response.key_history == ""
    data = registry.config.data_dir
    assert (data.stat().st_mode & 0o777) == 0o700
    assert ((data / "operator" / "operator.key").stat().st_mode & 0o777) == 0o600
    operator_leaf = x509.load_pem_x509_certificate(registry.operator_cert)
    uris = operator_leaf.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == [f"spiffe://{TRUST_DOMAIN}/operator/admin"]
    with registry.store.read() as view:
        admin = view.principals.find_by_name("operator", "admin")
    assert admin is not None and admin.revoked_at is None
    assert operator_leaf.not_valid_after_utc > datetime.now(UTC)
    # The trust bundle needs no credential.
    bundle = registry.svids(registry.anonymous()).GetTrustBundle(
        svid_pb2.GetTrustBundleRequest()
    )
    assert bundle.x509_authorities_pem == (data / "bundle.pem").read_bytes()
    challenge = registry.registration().GetChallenge(registration_pb2.GetChallengeRequest())
    assert len(challenge.nonce) == 32 and challenge.trust_domain == TRUST_DOMAIN
