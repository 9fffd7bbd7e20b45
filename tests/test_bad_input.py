"""Hostile values for every field of every RPC: a precise status, never INTERNAL, and
no partial agent, event or audit row (nor a consumed token) after a refused Register."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fixtures_registry import Agent, RunningRegistry, make_csr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.bindings import crypto_core_ed25519_add

from mesh.keys import IdentityKey
from mesh.registration import sign_proof
from mesh.v1 import agents_pb2, registration_pb2, svid_pb2, tokens_pb2
from registry.store import hash_token

S = grpc.StatusCode
SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=300)
blobs = st.binary(max_size=600)
uint32 = st.integers(min_value=0, max_value=2**32 - 1)

SMALL_ORDER = [
    bytes.fromhex(h)
    for h in (
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    )
]
# y = p: a non-canonical encoding of a point.
NON_CANONICAL = bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")


@dataclass
class Counts:
    agents: int
    events: int
    audit: int


def counts(backend: RunningRegistry) -> Counts:
    with backend.store.read() as view:
        return Counts(view.agents.count(), view.events.latest_seq(), view.audit.latest_seq())


def code_of(fn: Any, request: Any) -> S:
    try:
        fn(request, timeout=30)
    except grpc.RpcError as exc:
        assert exc.code() not in (S.INTERNAL, S.UNKNOWN), (exc.code(), exc.details())
        assert exc.details(), "every refusal says why"
        return exc.code()  # type: ignore[no-any-return]
    return S.OK


@pytest.fixture(scope="module")
def backend(any_registry: RunningRegistry) -> RunningRegistry:
    """Every test here runs against SQLite and against PostgreSQL."""
    return any_registry


@pytest.fixture(scope="module")
def agent(backend: RunningRegistry) -> Agent:
    return backend.register("bad/input")


@pytest.fixture(scope="module")
def stubs(backend: RunningRegistry, agent: Agent) -> Iterator[dict[str, Any]]:
    agent_ch = agent.channel()
    op_ch = backend.operator()
    yield {
        "register": backend.registration().Register,
        "renew": backend.svids(agent_ch).RenewX509SVID,
        "jwt": backend.svids(agent_ch).FetchJWTSVID,
        "resolve": backend.agents(agent_ch).ResolveDID,
        "get": backend.agents(op_ch).GetAgent,
        "list": backend.agents(op_ch).ListAgents,
        "revoke": backend.agents(op_ch).RevokeAgent,
        "terminate": backend.agents(op_ch).TerminateAgent,
        "create_token": backend.tokens(op_ch).CreateJoinToken,
        "list_tokens": backend.tokens(op_ch).ListJoinTokens,
        "revoke_token": backend.tokens(op_ch).RevokeJoinToken,
    }


def _token_record(backend: RunningRegistry, token: str) -> Any:
    if not token:
        return None
    with backend.store.read() as view:
        return view.tokens.find_by_hash(hash_token(token))


def assert_refused_cleanly(backend: RunningRegistry, request: Any, allowed: set[S]) -> S:
    before = counts(backend)
    token_before = _token_record(backend, request.join_token)
    code = code_of(backend.registration().Register, request)
    assert code in allowed, code
    assert counts(backend) == before
    assert _token_record(backend, request.join_token) == token_before
    return code


# -- Register: random fields -----------------------------------------------------------------


@SETTINGS
@given(
    join_token=text, public_key=blobs, challenge=blobs, proof=blobs, csr=blobs,
    metadata=st.dictionaries(text, text, max_size=20), key_history=text,
)
def test_register_random_fields(
    backend: RunningRegistry, join_token: str, public_key: bytes, challenge: bytes,
    proof: bytes, csr: bytes, metadata: dict[str, str], key_history: str,
) -> None:
    request = registration_pb2.RegisterRequest(
        join_token=join_token, public_key=public_key, challenge=challenge, proof=proof, csr=csr,
        metadata=metadata, key_history=key_history,
    )
    assert_refused_cleanly(
        backend, request, {S.INVALID_ARGUMENT, S.UNAUTHENTICATED, S.FAILED_PRECONDITION}
    )


_FIELDS = ("join_token", "public_key", "challenge", "proof", "csr", "metadata", "key_history")


@SETTINGS
@given(field=st.sampled_from(_FIELDS), data=st.data())
def test_register_one_field_mutated(backend: RunningRegistry, field: str, data: Any) -> None:
    """A valid request with one field replaced by a random value: refused, nothing written."""
    from datetime import UTC, datetime

    from mesh.keyhistory import KeyHistory

    identity = IdentityKey.generate()
    history = KeyHistory.incept(identity, datetime.now(UTC))
    request, _ = backend.register_request(identity, backend.join_token("bad/mutated"),
                                           history=history)
    if field == "metadata":
        value = data.draw(st.dictionaries(text, text, min_size=1, max_size=20))
        if len(value) <= 16 and all(
            k and len(k.encode()) <= 256 and len(v.encode()) <= 256
            and not any(ord(c) < 32 or 127 <= ord(c) <= 159 for c in k + v)
            for k, v in value.items()
        ):
            value = {**value, "\x00": "x"}
        request.metadata.clear()
        request.metadata.update(value)
    elif field in ("join_token", "key_history"):
        # An empty key_history is valid (it is optional): draw a non-empty one.
        current = getattr(request, field)
        setattr(request, field, data.draw(text.filter(lambda t: t and t != current)))
    else:
        setattr(request, field, data.draw(blobs.filter(lambda b: b != getattr(request, field))))
    assert_refused_cleanly(
        backend, request, {S.INVALID_ARGUMENT, S.UNAUTHENTICATED, S.FAILED_PRECONDITION}
    )


@pytest.mark.parametrize("weak", [*SMALL_ORDER, NON_CANONICAL], ids=lambda b: b.hex()[:8])
def test_register_weak_keys(backend: RunningRegistry, weak: bytes) -> None:
    request, _ = backend.register_request(IdentityKey.generate(), backend.join_token())
    request.public_key = weak
    assert assert_refused_cleanly(backend, request, {S.INVALID_ARGUMENT}) == S.INVALID_ARGUMENT


def test_register_mixed_order_key(backend: RunningRegistry) -> None:
    honest = IdentityKey.generate().public_key
    mixed = crypto_core_ed25519_add(honest, SMALL_ORDER[4])
    request, _ = backend.register_request(IdentityKey.generate(), backend.join_token())
    request.public_key = mixed
    assert assert_refused_cleanly(backend, request, {S.INVALID_ARGUMENT}) == S.INVALID_ARGUMENT


def _csr_with(key: Any, *, sans: list[x509.GeneralName] | None = None, ca: bool = False) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.DER)


def _bad_csrs(identity: IdentityKey) -> dict[str, bytes]:
    p256 = ec.generate_private_key(ec.SECP256R1())
    own = f"spiffe://test.mesh/agent/{identity.did().id}"
    return {
        "rsa": _csr_with(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "ed25519": _csr_with(ed25519.Ed25519PrivateKey.generate()),
        "p384": _csr_with(ec.generate_private_key(ec.SECP384R1())),
        "extra-dns-san": _csr_with(p256, sans=[x509.DNSName("evil.example")]),
        "two-uris": _csr_with(
            p256,
            sans=[
                x509.UniformResourceIdentifier(own),
                x509.UniformResourceIdentifier("spiffe://test.mesh/agent/other"),
            ],
        ),
        "foreign-id": _csr_with(
            p256, sans=[x509.UniformResourceIdentifier("spiffe://test.mesh/operator/admin")]
        ),
        "ca-flag": _csr_with(p256, ca=True),
        "garbage": b"\x30\x82\x01\x00" + b"\x00" * 40,
        "truncated": make_csr()[1][:-10],
    }


@pytest.mark.parametrize(
    "kind",
    ["rsa", "ed25519", "p384", "extra-dns-san", "two-uris", "foreign-id", "ca-flag", "garbage",
     "truncated"],
)
def test_register_bad_csr(backend: RunningRegistry, kind: str) -> None:
    identity = IdentityKey.generate()
    csr = _bad_csrs(identity)[kind]
    request, _ = backend.register_request(identity, backend.join_token(), csr=csr)
    # The proof covers this CSR, so the refusal is the CA's, with its reason.
    assert assert_refused_cleanly(backend, request, {S.INVALID_ARGUMENT}) == S.INVALID_ARGUMENT


def test_register_token_states(backend: RunningRegistry) -> None:
    # Unknown token.
    request, _ = backend.register_request(IdentityKey.generate(), "mjt.unknown-token")
    assert assert_refused_cleanly(backend, request, {S.UNAUTHENTICATED}) == S.UNAUTHENTICATED
    # Revoked token.
    created = backend.tokens().CreateJoinToken(
        tokens_pb2.CreateJoinTokenRequest(agent_name="bad/revoked")
    )
    backend.tokens().RevokeJoinToken(tokens_pb2.RevokeJoinTokenRequest(id=created.info.id))
    request, _ = backend.register_request(IdentityKey.generate(), created.token)
    assert assert_refused_cleanly(backend, request, {S.UNAUTHENTICATED}) == S.UNAUTHENTICATED
    # Expired token.
    token = backend.join_token("bad/expired", ttl=1)
    time.sleep(1.2)
    request, _ = backend.register_request(IdentityKey.generate(), token)
    assert assert_refused_cleanly(backend, request, {S.UNAUTHENTICATED}) == S.UNAUTHENTICATED
    # Token used by another key.
    used = backend.join_token("bad/used")
    first, _ = backend.register_request(IdentityKey.generate(), used)
    backend.registration().Register(first)
    request, _ = backend.register_request(IdentityKey.generate(), used)
    assert assert_refused_cleanly(backend, request, {S.UNAUTHENTICATED}) == S.UNAUTHENTICATED
    # A malformed token never reaches the store.
    request, _ = backend.register_request(IdentityKey.generate(), "x" * 500)
    assert assert_refused_cleanly(backend, request, {S.INVALID_ARGUMENT}) == S.INVALID_ARGUMENT


def test_register_replayed_and_foreign_challenge(backend: RunningRegistry) -> None:
    identity = IdentityKey.generate()
    request, _ = backend.register_request(identity, backend.join_token())
    backend.registration().Register(request)
    # Replay of the whole request (same challenge): FAILED_PRECONDITION.
    again = registration_pb2.RegisterRequest()
    again.CopyFrom(request)
    again.join_token = ""
    again.proof = sign_proof(identity, "test.mesh", request.challenge, request.csr)
    assert (
        assert_refused_cleanly(backend, again, {S.FAILED_PRECONDITION}) == S.FAILED_PRECONDITION
    )
    # A nonce the backend never issued, properly signed.
    other = IdentityKey.generate()
    fresh, _ = backend.register_request(other, backend.join_token())
    fresh.challenge = b"\x07" * 32
    fresh.proof = sign_proof(other, "test.mesh", fresh.challenge, fresh.csr)
    assert (
        assert_refused_cleanly(backend, fresh, {S.FAILED_PRECONDITION}) == S.FAILED_PRECONDITION
    )
    # A proof for another trust domain.
    third = IdentityKey.generate()
    wrong, _ = backend.register_request(third, backend.join_token())
    wrong.proof = sign_proof(third, "other.domain", wrong.challenge, wrong.csr)
    assert assert_refused_cleanly(backend, wrong, {S.UNAUTHENTICATED}) == S.UNAUTHENTICATED


def test_oversized_fields(backend: RunningRegistry, stubs: dict[str, Any]) -> None:
    identity = IdentityKey.generate()
    request, _ = backend.register_request(identity, backend.join_token())
    for field, value in (
        ("csr", b"\x30" * 9000),
        ("key_history", "{" * 300_000),
        ("metadata", {f"k{i}": "v" for i in range(17)}),
    ):
        bad = registration_pb2.RegisterRequest()
        bad.CopyFrom(request)
        if field == "metadata":
            bad.metadata.update(value)  # type: ignore[arg-type]
        else:
            setattr(bad, field, value)
        assert assert_refused_cleanly(backend, bad, {S.INVALID_ARGUMENT}) == S.INVALID_ARGUMENT
    # Past the transport's message limit grpc answers itself, still not INTERNAL.
    huge = registration_pb2.RegisterRequest(csr=b"\x00" * (2 * 1024 * 1024))
    assert code_of(stubs["register"], huge) == S.RESOURCE_EXHAUSTED
    assert code_of(stubs["revoke"], agents_pb2.RevokeAgentRequest(
        did="did:mesh:1111111111111111111111111111", reason="r" * 600)) == S.INVALID_ARGUMENT
    assert code_of(stubs["jwt"], svid_pb2.FetchJWTSVIDRequest(audience=["a"] * 9)) == (
        S.INVALID_ARGUMENT
    )
    assert code_of(stubs["jwt"], svid_pb2.FetchJWTSVIDRequest(audience=["a" * 300])) == (
        S.INVALID_ARGUMENT
    )


# -- the other RPCs ----------------------------------------------------------------------------


@SETTINGS
@given(csr=blobs)
def test_renew_random_csr(stubs: dict[str, Any], csr: bytes) -> None:
    code = code_of(stubs["renew"], svid_pb2.RenewX509SVIDRequest(csr=csr))
    assert code == S.INVALID_ARGUMENT


@SETTINGS
@given(audience=st.lists(text, max_size=10), ttl=uint32)
def test_fetch_jwt_random(stubs: dict[str, Any], audience: list[str], ttl: int) -> None:
    code = code_of(stubs["jwt"], svid_pb2.FetchJWTSVIDRequest(audience=audience, ttl_seconds=ttl))
    assert code in (S.OK, S.INVALID_ARGUMENT)


@SETTINGS
@given(did=text, which=st.sampled_from(["resolve", "get"]))
def test_did_lookups_random(stubs: dict[str, Any], did: str, which: str) -> None:
    request = (
        agents_pb2.ResolveDIDRequest(did=did) if which == "resolve"
        else agents_pb2.GetAgentRequest(did=did)
    )
    assert code_of(stubs[which], request) in (S.INVALID_ARGUMENT, S.NOT_FOUND)


@SETTINGS
@given(did=text, reason=text, which=st.sampled_from(["revoke", "terminate"]))
def test_revoke_terminate_random(
    backend: RunningRegistry, stubs: dict[str, Any], did: str, reason: str, which: str
) -> None:
    before = counts(backend)
    cls = agents_pb2.RevokeAgentRequest if which == "revoke" else agents_pb2.TerminateAgentRequest
    assert code_of(stubs[which], cls(did=did, reason=reason)) in (S.INVALID_ARGUMENT, S.NOT_FOUND)
    assert counts(backend) == before


@SETTINGS
@given(page_size=uint32, page_token=text, status=st.integers(-(2**31), 2**31 - 1))
def test_list_agents_random(
    stubs: dict[str, Any], page_size: int, page_token: str, status: int
) -> None:
    request = agents_pb2.ListAgentsRequest(page_size=page_size, page_token=page_token)
    request.status = status  # type: ignore[assignment]
    assert code_of(stubs["list"], request) in (S.OK, S.INVALID_ARGUMENT)


@SETTINGS
@given(name=text, ttl=uint32)
def test_create_token_random(stubs: dict[str, Any], name: str, ttl: int) -> None:
    request = tokens_pb2.CreateJoinTokenRequest(agent_name=name, ttl_seconds=ttl)
    assert code_of(stubs["create_token"], request) in (S.OK, S.INVALID_ARGUMENT)


@SETTINGS
@given(token_id=text, include=st.booleans())
def test_token_ids_random(stubs: dict[str, Any], token_id: str, include: bool) -> None:
    assert code_of(stubs["revoke_token"], tokens_pb2.RevokeJoinTokenRequest(id=token_id)) in (
        S.INVALID_ARGUMENT, S.NOT_FOUND
    )
    listed = tokens_pb2.ListJoinTokensRequest(include_inactive=include)
    assert code_of(stubs["list_tokens"], listed) == S.OK


def test_precise_statuses(backend: RunningRegistry, stubs: dict[str, Any]) -> None:
    unknown = "did:mesh:" + IdentityKey.generate().did().id
    assert code_of(stubs["get"], agents_pb2.GetAgentRequest(did=unknown)) == S.NOT_FOUND
    assert code_of(stubs["get"], agents_pb2.GetAgentRequest(did="")) == S.INVALID_ARGUMENT
    assert code_of(stubs["revoke_token"], tokens_pb2.RevokeJoinTokenRequest(id="0" * 32)) == (
        S.NOT_FOUND
    )
    created = backend.tokens().CreateJoinToken(
        tokens_pb2.CreateJoinTokenRequest(agent_name="bad/twice")
    )
    revoke = tokens_pb2.RevokeJoinTokenRequest(id=created.info.id)
    assert code_of(stubs["revoke_token"], revoke) == S.OK
    assert code_of(stubs["revoke_token"], revoke) == S.FAILED_PRECONDITION
    too_long = tokens_pb2.CreateJoinTokenRequest(agent_name="a", ttl_seconds=8 * 24 * 3600)
    assert code_of(stubs["create_token"], too_long) == S.INVALID_ARGUMENT
    # The secret is shown once and only its hash is stored.
    with backend.store.read() as view:
        assert view.tokens.find_by_hash(hash_token(created.token)) is not None
    assert len(created.token) >= 43
    # An agent that registers again with a second token: ALREADY_EXISTS, token untouched.
    identity = IdentityKey.generate()
    first, _ = backend.register_request(identity, backend.join_token())
    backend.registration().Register(first)
    second, _ = backend.register_request(identity, backend.join_token())
    assert assert_refused_cleanly(backend, second, {S.ALREADY_EXISTS}) == S.ALREADY_EXISTS
