"""KeyService over real gRPC: RotateKey, compromise, rotation requests, key age limit."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh.keyhistory import KeyHistory
from mesh.keys import IdentityKey
from mesh.rotation import ROTATION_REQUIRED
from mesh.v1 import agents_pb2, registration_pb2, rotation_pb2, rotation_pb2_grpc, svid_pb2
from tests.fixtures_registry import Agent, RunningRegistry, _start, make_csr


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningRegistry]:
    """A fresh registry for this module, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        running = _start(Path(tmp_path_factory.mktemp("rotation")))
        try:
            yield running
        finally:
            running.stop()
        return
    request.getfixturevalue("postgres_admin_url")  # skips (or fails under CI) without it
    import psycopg

    name = f"trustmesh_rot_{uuid.uuid4().hex[:12]}"
    dsn = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    running = _start(
        Path(tmp_path_factory.mktemp("rotation_pg")),
        f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
    )
    try:
        yield running
    finally:
        running.stop()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def keys(ch: grpc.Channel) -> rotation_pb2_grpc.KeyServiceStub:
    return rotation_pb2_grpc.KeyServiceStub(ch)


def register(registry: RunningRegistry, name: str = "rot/agent", age: timedelta = timedelta(0)
             ) -> Agent:
    identity = IdentityKey.generate()
    history = KeyHistory.incept(identity, datetime.now(UTC) - age)
    request, key = registry.register_request(identity, registry.join_token(name), history=history)
    response = registry.registration().Register(request)
    assert key is not None
    return Agent(registry, identity, response.did, response.spiffe_id, key,
                 list(response.svid.cert_chain), response, history)


def rotated(agent: Agent, at: datetime | None = None) -> tuple[IdentityKey, KeyHistory]:
    assert agent.history is not None
    new = IdentityKey.generate()
    history = agent.history.rotate(agent.identity, new, at or datetime.now(UTC))
    return new, history


def adopt(agent: Agent, new: IdentityKey, history: KeyHistory) -> None:
    agent.identity, agent.history = new, history


def renew(agent: Agent) -> svid_pb2.RenewX509SVIDResponse:
    return agent.registry.svids(agent.channel()).RenewX509SVID(
        svid_pb2.RenewX509SVIDRequest(csr=make_csr()[1])
    )


def code_of(fn: object) -> tuple[grpc.StatusCode, str]:
    try:
        fn()  # type: ignore[operator]
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    raise AssertionError("the call succeeded")


def events_of(registry: RunningRegistry, kind: str, did: str) -> list[dict[str, object]]:
    with registry.store.read() as view:
        records = view.events.since(0, limit=10000, agent_did=did)
    return [r.payload for r in records if r.type == kind]


def test_rotate_over_mtls(registry: RunningRegistry) -> None:
    agent = register(registry)
    old = agent.identity
    new, history = rotated(agent)
    response = keys(agent.channel()).RotateKey(
        rotation_pb2.RotateKeyRequest(key_history=history.to_json())
    )
    assert response.rotated and response.current_key.kid == new.kid
    assert response.current_key.index == 1
    # A retry (the answer was lost) is harmless.
    again = keys(agent.channel()).RotateKey(
        rotation_pb2.RotateKeyRequest(key_history=history.to_json())
    )
    assert not again.rotated and again.current_key.kid == new.kid
    resolved = registry.agents(registry.operator()).ResolveDID(
        agents_pb2.ResolveDIDRequest(did=agent.did)
    )
    assert [k.kid for k in resolved.keys] == [old.kid, new.kid]
    assert resolved.keys[0].HasField("rotated_at")
    assert KeyHistory.from_json(resolved.key_history) == history
    (event,) = events_of(registry, "agent.key_rotated", agent.did)
    assert event["kid"] == new.kid and event["previous_kid"] == old.kid
    assert event["state"]["current_kid"] == new.kid  # type: ignore[index]
    # The SVID keeps working: renewal over mTLS needs no new identity key.
    assert renew(agent).svid.cert_chain
    # Re-registration by key: the old key is out, the new one in.
    request, _ = registry.register_request(old, "")
    code, _ = code_of(lambda: registry.registration().Register(request))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    request, _ = registry.register_request(new, "")
    assert registry.registration().Register(request).did == agent.did


def test_rotate_without_certificate_is_authenticated_by_the_history(
    registry: RunningRegistry,
) -> None:
    agent = register(registry)
    new, history = rotated(agent)
    response = keys(registry.anonymous()).RotateKey(
        rotation_pb2.RotateKeyRequest(key_history=history.to_json())
    )
    assert response.rotated and response.current_key.kid == new.kid


def test_rotate_refusals(registry: RunningRegistry) -> None:
    agent, other = register(registry), register(registry)
    _, history = rotated(agent)
    stub = keys(other.channel())
    code, detail = code_of(
        lambda: stub.RotateKey(rotation_pb2.RotateKeyRequest(key_history=history.to_json()))
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED and agent.did in detail
    # Operators do not rotate agents' keys: they ask the agent to.
    code, _ = code_of(
        lambda: keys(registry.operator()).RotateKey(
            rotation_pb2.RotateKeyRequest(key_history=history.to_json())
        )
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    mine = keys(agent.channel())
    for bad in ("", "{", json.dumps({"format": "x"})):
        code, detail = code_of(
            lambda bad=bad: mine.RotateKey(rotation_pb2.RotateKeyRequest(key_history=bad))
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "key_history" in detail
    # A tampered signature.
    doc = json.loads(history.to_json())
    sig = doc["entries"][1]["signature_next"]
    doc["entries"][1]["signature_next"] = ("A" if sig[0] != "A" else "B") + sig[1:]
    code, _ = code_of(
        lambda: mine.RotateKey(rotation_pb2.RotateKeyRequest(key_history=json.dumps(doc)))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    # Dated far in the future.
    _, future = rotated(agent, datetime.now(UTC) + timedelta(hours=1))
    code, detail = code_of(
        lambda: mine.RotateKey(rotation_pb2.RotateKeyRequest(key_history=future.to_json()))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "clock" in detail
    # A fork: after one rotation, another rotation from the same old key.
    assert mine.RotateKey(rotation_pb2.RotateKeyRequest(key_history=history.to_json())).rotated
    _, fork = rotated(agent)
    code, detail = code_of(
        lambda: keys(registry.anonymous()).RotateKey(
            rotation_pb2.RotateKeyRequest(key_history=fork.to_json())
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    # Rotating to a key another agent holds.
    assert other.history is not None
    taken = other.history.rotate(other.identity, agent.identity, datetime.now(UTC))
    code, detail = code_of(
        lambda: keys(other.channel()).RotateKey(
            rotation_pb2.RotateKeyRequest(key_history=taken.to_json())
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "already registered" in detail
    # Only the inception: shorter than what the registry holds.
    assert agent.history is not None
    code, _ = code_of(
        lambda: keys(registry.anonymous()).RotateKey(
            rotation_pb2.RotateKeyRequest(key_history=agent.history.to_json())  # type: ignore[union-attr]
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION


def test_key_age_hard_limit_blocks_svids_until_rotation(registry: RunningRegistry) -> None:
    fresh_enough = register(registry, age=timedelta(days=31))
    assert renew(fresh_enough).svid.cert_chain  # past the period: still renews (trust drops)
    agent = register(registry, age=timedelta(days=46))
    code, detail = code_of(lambda: renew(agent))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert detail.startswith(ROTATION_REQUIRED) and "45 days" in detail
    request, _ = registry.register_request(agent.identity, "")
    code, detail = code_of(lambda: registry.registration().Register(request))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and detail.startswith(ROTATION_REQUIRED)
    _, history = rotated(agent)
    keys(agent.channel()).RotateKey(rotation_pb2.RotateKeyRequest(key_history=history.to_json()))
    assert renew(agent).svid.cert_chain


def test_compromise(registry: RunningRegistry) -> None:
    agent = register(registry)
    operator = keys(registry.operator())
    when = datetime.now(UTC)
    info = operator.MarkKeyCompromised(
        rotation_pb2.MarkKeyCompromisedRequest(
            did=agent.did, compromised_at=_ts(when), reason="laptop stolen"
        )
    )
    assert info.kid == agent.identity.kid and info.HasField("compromised_at")
    (event,) = events_of(registry, "agent.key_compromised", agent.did)
    assert event["kid"] == agent.identity.kid and event["reason"] == "laptop stolen"
    code, detail = code_of(lambda: renew(agent))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and detail.startswith(ROTATION_REQUIRED)
    # Whoever stole the key cannot rotate with it alone (no certificate) ...
    _, history = rotated(agent)
    request = rotation_pb2.RotateKeyRequest(key_history=history.to_json())
    code, detail = code_of(lambda: keys(registry.anonymous()).RotateKey(request))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "compromised" in detail
    # ... the agent, with its SVID from before the compromise, can; then it renews again.
    assert keys(agent.channel()).RotateKey(request).rotated
    assert renew(agent).svid.cert_chain
    # Bad input.
    for bad in (
        rotation_pb2.MarkKeyCompromisedRequest(did="did:mesh:nope"),
        rotation_pb2.MarkKeyCompromisedRequest(
            did=agent.did, compromised_at=_ts(datetime.now(UTC) + timedelta(days=1))
        ),
    ):
        code, _ = code_of(lambda bad=bad: operator.MarkKeyCompromised(bad))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = code_of(
        lambda: operator.MarkKeyCompromised(
            rotation_pb2.MarkKeyCompromisedRequest(did=agent.did, kid="not-a-kid")
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND


def test_rotation_campaign(registry: RunningRegistry) -> None:
    old = [register(registry, "rot/old", age=timedelta(days=40)) for _ in range(3)]
    young = register(registry, "rot/young")
    operator = keys(registry.operator())
    campaign = operator.RequestRotationAll(
        rotation_pb2.RequestRotationAllRequest(older_than_seconds=35 * 86400, reason="monthly")
    )
    assert campaign.requested >= 3 and campaign.id
    status = operator.GetRotationStatus(
        rotation_pb2.GetRotationStatusRequest(campaign_id=campaign.id, include_agents=True)
    )
    dids = {a.did for a in status.agents}
    assert {a.did for a in old} <= dids and young.did not in dids
    assert status.pending == status.requested
    (event,) = events_of(registry, "agent.rotation_requested", old[0].did)
    assert event["kid"] == old[0].identity.kid and event["reason"] == "monthly"
    _, history = rotated(old[0])
    keys(old[0].channel()).RotateKey(rotation_pb2.RotateKeyRequest(key_history=history.to_json()))
    registry.agents(registry.operator()).RevokeAgent(
        agents_pb2.RevokeAgentRequest(did=old[1].did, reason="gone")
    )
    status = operator.GetRotationStatus(
        rotation_pb2.GetRotationStatusRequest(campaign_id=campaign.id, include_agents=True)
    )
    states = {a.did: a.state for a in status.agents}
    assert states[old[0].did] == rotation_pb2.ROTATION_STATE_ROTATED
    assert states[old[1].did] == rotation_pb2.ROTATION_STATE_FAILED
    assert states[old[2].did] == rotation_pb2.ROTATION_STATE_PENDING
    assert status.rotated >= 1 and status.failed >= 1
    assert status.rotated + status.pending + status.failed == status.requested
    # One agent.
    one = operator.RequestRotation(rotation_pb2.RequestRotationRequest(did=young.did))
    assert one.requested == 1
    # Bad input.
    for bad_id in ("", "x", "5-3", "0-0"):
        code, _ = code_of(
            lambda bad_id=bad_id: operator.GetRotationStatus(
                rotation_pb2.GetRotationStatusRequest(campaign_id=bad_id)
            )
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = code_of(
        lambda: operator.RequestRotation(rotation_pb2.RequestRotationRequest(did=old[1].did))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION


def test_authorisation(registry: RunningRegistry) -> None:
    agent = register(registry)
    requests = {
        "MarkKeyCompromised": rotation_pb2.MarkKeyCompromisedRequest(did=agent.did),
        "RequestRotation": rotation_pb2.RequestRotationRequest(did=agent.did),
        "RequestRotationAll": rotation_pb2.RequestRotationAllRequest(),
        "GetRotationStatus": rotation_pb2.GetRotationStatusRequest(campaign_id="1-1"),
    }
    for name, request in requests.items():
        for channel, expected in (
            (agent.channel(), grpc.StatusCode.PERMISSION_DENIED),
            (registry.anonymous(), grpc.StatusCode.UNAUTHENTICATED),
        ):
            method = getattr(keys(channel), name)
            code, _ = code_of(lambda method=method, request=request: method(request))
            assert code == expected, (name, code)
    ca = rotation_pb2_grpc.CAServiceStub(agent.channel())
    code, _ = code_of(lambda: ca.RotateCA(rotation_pb2.RotateCARequest()))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _ = code_of(lambda: ca.GetCAStatus(rotation_pb2.GetCAStatusRequest()))
    assert code == grpc.StatusCode.PERMISSION_DENIED


def _ts(at: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(at)
    return ts


_ = registration_pb2


# -- hostile values: a precise status, never INTERNAL ------------------------------------------

_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
_TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=300)
_PRECISE = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
}


def _code(fn: Any, request: Any) -> grpc.StatusCode:
    try:
        fn(request, timeout=30)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@_SETTINGS
@given(text=_TEXT | st.from_regex(r'\{"format": ?".{0,40}".*', fullmatch=True))
def test_rotate_key_hostile_history(registry: RunningRegistry, text: str) -> None:
    code = _code(keys(registry.anonymous()).RotateKey, rotation_pb2.RotateKeyRequest(
        key_history=text))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


@_SETTINGS
@given(
    did=_TEXT,
    kid=_TEXT,
    reason=_TEXT | st.text(alphabet="x", min_size=500, max_size=700),
    seconds=st.integers(-(2**63), 2**63 - 1),
    nanos=st.integers(-(2**31), 2**31 - 1),
)
def test_mark_compromised_hostile(
    registry: RunningRegistry, did: str, kid: str, reason: str, seconds: int, nanos: int
) -> None:
    request = rotation_pb2.MarkKeyCompromisedRequest(did=did, kid=kid, reason=reason)
    request.compromised_at.seconds, request.compromised_at.nanos = seconds, nanos
    assert _code(keys(registry.operator()).MarkKeyCompromised, request) in _PRECISE


@_SETTINGS
@given(
    campaign=_TEXT | st.from_regex(r"[0-9]{1,25}-[0-9]{1,25}", fullmatch=True),
    older=st.integers(0, 2**64 - 1),
    did=_TEXT,
)
def test_rotation_requests_hostile(
    registry: RunningRegistry, campaign: str, older: int, did: str
) -> None:
    stub = keys(registry.operator())
    status = rotation_pb2.GetRotationStatusRequest(campaign_id=campaign)
    assert _code(stub.GetRotationStatus, status) in _PRECISE
    # At least ~32 years: keep the fleet out of it (nobody is that old), any value above.
    every = rotation_pb2.RequestRotationAllRequest(
        older_than_seconds=max(older, 10**9), reason="x"
    )
    assert _code(stub.RequestRotationAll, every) in _PRECISE
    one = rotation_pb2.RequestRotationRequest(did=did)
    assert _code(stub.RequestRotation, one) in _PRECISE
