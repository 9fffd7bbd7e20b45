"""Every RPC's authorisation rule, exercised over real TLS/mTLS by every kind of caller."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fixtures_registry import TRUST_DOMAIN, Agent, RunningRegistry, make_csr
from grpc_health.v1 import health_pb2

from mesh.keys import IdentityKey
from mesh.v1 import agents_pb2, registration_pb2, svid_pb2, tokens_pb2
from registry.authz import RULES, Rule
from registry.server import SERVICE_NAMES

DENIALS = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)

# Every method of this module's services (and health), each exercised by test_rule.
_MESSAGES = {
    "/mesh.v1.RegistrationService/GetChallenge",
    "/mesh.v1.RegistrationService/Register",
    "/mesh.v1.SVIDService/RenewX509SVID",
    "/mesh.v1.SVIDService/FetchJWTSVID",
    "/mesh.v1.SVIDService/GetTrustBundle",
    "/mesh.v1.AgentService/ResolveDID",
    "/mesh.v1.AgentService/GetAgent",
    "/mesh.v1.AgentService/ListAgents",
    "/mesh.v1.AgentService/RevokeAgent",
    "/mesh.v1.AgentService/TerminateAgent",
    "/mesh.v1.JoinTokenService/CreateJoinToken",
    "/mesh.v1.JoinTokenService/ListJoinTokens",
    "/mesh.v1.JoinTokenService/RevokeJoinToken",
    "/grpc.health.v1.Health/Check",
}


def _request(registry: RunningRegistry, method: str, target: str) -> Any:
    """A valid request for ``method`` aimed at the agent ``target``."""
    name = method.rsplit("/", 1)[1]
    if name == "GetChallenge":
        return registration_pb2.GetChallengeRequest()
    if name == "Register":
        request, _ = registry.register_request(IdentityKey.generate(), registry.join_token())
        return request
    if name == "RenewX509SVID":
        return svid_pb2.RenewX509SVIDRequest(csr=make_csr()[1])
    if name == "FetchJWTSVID":
        return svid_pb2.FetchJWTSVIDRequest(audience=["authz-test"])
    if name == "GetTrustBundle":
        return svid_pb2.GetTrustBundleRequest()
    if name == "ResolveDID":
        return agents_pb2.ResolveDIDRequest(did=target)
    if name == "GetAgent":
        return agents_pb2.GetAgentRequest(did=target)
    if name == "ListAgents":
        return agents_pb2.ListAgentsRequest()
    if name == "RevokeAgent":
        return agents_pb2.RevokeAgentRequest(did=target, reason="authz test")
    if name == "TerminateAgent":
        return agents_pb2.TerminateAgentRequest(did=target, reason="authz test")
    if name == "CreateJoinToken":
        return tokens_pb2.CreateJoinTokenRequest(agent_name="authz/test")
    if name == "ListJoinTokens":
        return tokens_pb2.ListJoinTokensRequest()
    if name == "RevokeJoinToken":
        created = registry.tokens().CreateJoinToken(
            tokens_pb2.CreateJoinTokenRequest(agent_name="authz/revoke")
        )
        return tokens_pb2.RevokeJoinTokenRequest(id=created.info.id)
    if name == "Check":
        return health_pb2.HealthCheckRequest()
    raise AssertionError(f"no request builder for {method}")


def _call(channel: grpc.Channel, method: str, request: Any) -> grpc.StatusCode:
    call = channel.unary_unary(
        method,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=lambda b: b,
    )
    try:
        call(request, timeout=30)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


UNARY_METHODS = sorted(m for m in RULES if m in _MESSAGES)


def test_every_served_method_has_a_rule(registry: RunningRegistry) -> None:
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.Default()
    served = {
        f"/{name}/{method.name}"
        for name in SERVICE_NAMES
        for method in pool.FindServiceByName(name).methods
    }
    missing = served - set(RULES)
    assert not missing, f"RPCs without an authorisation rule: {sorted(missing)}"
    # The rules of this module's services are each exercised below.
    ours = {m for m in served if m.split("/")[1] in _OURS}
    assert ours <= set(_MESSAGES)


_OURS = {
    "mesh.v1.RegistrationService",
    "mesh.v1.SVIDService",
    "mesh.v1.AgentService",
    "mesh.v1.JoinTokenService",
}


def _fresh_agents(registry: RunningRegistry) -> tuple[Agent, Agent]:
    return registry.register("authz/a"), registry.register("authz/b")


@pytest.mark.parametrize("method", UNARY_METHODS)
def test_rule(registry: RunningRegistry, method: str) -> None:
    rule = RULES[method]
    a, b = _fresh_agents(registry)
    # Agent A aimed at agent B first (A may revoke itself below).
    outcomes = {"other": _call(a.channel(), method, _request(registry, method, b.did))}
    callers: dict[str, Callable[[], grpc.Channel]] = {
        "anonymous": registry.anonymous,
        "operator": registry.operator,
        "self": a.channel,
    }
    for who, make in callers.items():
        target = a.did if who != "operator" else b.did
        if who == "operator" and method.endswith(("RevokeAgent", "TerminateAgent")):
            target = registry.register("authz/victim").did
        outcomes[who] = _call(make(), method, _request(registry, method, target))

    allowed = {
        Rule.PUBLIC: {"anonymous", "operator", "self", "other"},
        Rule.AUTHENTICATED: {"operator", "self", "other"},
        Rule.AGENT_SELF: {"self", "other"},  # no target: it acts on the caller only
        Rule.OPERATOR: {"operator"},
        Rule.OPERATOR_OR_SELF: {"operator", "self"},
    }[rule]
    for who, code in outcomes.items():
        if who in allowed:
            assert code == grpc.StatusCode.OK, (method, who, code)
        elif who == "anonymous":
            assert code == grpc.StatusCode.UNAUTHENTICATED, (method, who, code)
        else:
            assert code == grpc.StatusCode.PERMISSION_DENIED, (method, who, code)


def test_agent_cannot_renew_for_another(registry: RunningRegistry) -> None:
    a, b = _fresh_agents(registry)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(b.spiffe_id)]),
            critical=True,
        )
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    with pytest.raises(grpc.RpcError) as err:
        registry.svids(a.channel()).RenewX509SVID(svid_pb2.RenewX509SVIDRequest(csr=csr))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_revoked_agent_cannot_act(registry: RunningRegistry) -> None:
    a, b = _fresh_agents(registry)
    ch = a.channel()
    registry.agents(registry.operator()).RevokeAgent(
        agents_pb2.RevokeAgentRequest(did=a.did, reason="test")
    )
    with pytest.raises(grpc.RpcError) as err:
        registry.agents(ch).ResolveDID(agents_pb2.ResolveDIDRequest(did=b.did))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # Nor re-register with its key.
    request, _ = registry.register_request(a.identity, "")
    with pytest.raises(grpc.RpcError) as err:
        registry.registration().Register(request)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_certificate_not_issued_through_registration_is_refused(registry: RunningRegistry) -> None:
    # A valid chain for an agent ID the registry never registered an SVID for.
    identity = IdentityKey.generate()
    key, csr = make_csr()
    chain = registry.ca.issue_x509_svid(
        csr, f"spiffe://{TRUST_DOMAIN}/agent/{identity.did().id}"
    )
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain[:1])
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ch = registry.channel(key_pem, pem)
    with pytest.raises(grpc.RpcError) as err:
        registry.svids(ch).FetchJWTSVID(svid_pb2.FetchJWTSVIDRequest(audience=["x"]))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # A registered agent presenting a certificate the registry did not record for it.
    agent = registry.register("authz/serial")
    key2, csr2 = make_csr()
    stray = registry.ca.issue_x509_svid(csr2, agent.spiffe_id)
    ch2 = registry.channel(
        key2.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        stray[0].public_bytes(serialization.Encoding.PEM),
    )
    with pytest.raises(grpc.RpcError) as err:
        registry.svids(ch2).FetchJWTSVID(svid_pb2.FetchJWTSVIDRequest(audience=["x"]))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_unknown_and_revoked_operators(registry: RunningRegistry) -> None:
    def operator_channel(name: str) -> grpc.Channel:
        issued = registry.ca.issue_operator_certificate(name)
        return registry.channel(issued.private_key_pem(), issued.chain_pem())

    request = tokens_pb2.ListJoinTokensRequest()
    with pytest.raises(grpc.RpcError) as err:
        registry.tokens(operator_channel("stranger")).ListJoinTokens(request)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

    with registry.store.transaction() as tx:
        record = tx.principals.create(
            kind="operator", name="alice", roles=["admin"], credential_hash="a" * 64
        )
    alice = operator_channel("alice")
    assert registry.tokens(alice).ListJoinTokens(request) is not None
    with registry.store.transaction() as tx:
        tx.principals.revoke(record.id)
    with pytest.raises(grpc.RpcError) as err:
        registry.tokens(operator_channel("alice")).ListJoinTokens(request)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_public_port_never_authenticates(registry: RunningRegistry) -> None:
    # The TLS-only listener does not request client certificates: a credential sent
    # there is not seen, so operator calls are refused there with a pointer to mTLS.
    creds = grpc.ssl_channel_credentials(
        root_certificates=registry.bundle_pem,
        private_key=registry.operator_key,
        certificate_chain=registry.operator_cert,
    )
    with grpc.secure_channel(registry.address, creds) as ch:
        with pytest.raises(grpc.RpcError) as err:
            registry.tokens(ch).ListJoinTokens(tokens_pb2.ListJoinTokensRequest())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "mtls_listen" in str(err.value.details())
