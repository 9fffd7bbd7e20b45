"""The agent and operator clients end to end against the real registry (TLS on loopback)."""

from __future__ import annotations

import json
import socket
import stat
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from fixtures_registry import TRUST_DOMAIN, RunningRegistry

from mesh.bundle import Bundle
from mesh.client import (
    AgentClient,
    FailedPrecondition,
    InvalidRequest,
    OperatorClient,
    PermissionDenied,
    RegistryChannel,
    RegistryUnavailable,
    ResponseError,
    RetryPolicy,
    TLSConfig,
)
from mesh.client.types import AgentStatus, Registration
from mesh.errors import MeshError
from mesh.keys import load_identity
from mesh.svid import X509SVID, parse_and_validate_jwt_svid, verify_x509svid
from mesh.v1 import svid_pb2, svid_pb2_grpc, tokens_pb2, tokens_pb2_grpc


@pytest.fixture(scope="module")
def operator(registry: RunningRegistry) -> OperatorClient:
    client = OperatorClient.from_data_dir(
        registry.config.data_dir, registry.address, mtls_registry=registry.mtls_address
    )
    yield client  # type: ignore[misc]
    client.close()


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _new_agent(
    registry: RunningRegistry, operator: OperatorClient, tmp_path: Path, name: str, **kw: Any
) -> tuple[AgentClient, Registration]:
    token = operator.create_token(name)
    client = AgentClient(
        registry.address,
        tmp_path / "agent",
        registry.bundle_pem,
        mtls_registry=registry.mtls_address,
        **kw,
    )
    return client, client.register(token.token)


def _check_on_disk(agent_dir: Path, did: str) -> X509SVID:
    info = json.loads((agent_dir / "agent.json").read_text())
    assert info["did"] == did
    assert info["trust_domain"] == TRUST_DOMAIN
    bundle = Bundle.from_x509_pem(TRUST_DOMAIN, (agent_dir / "bundle.0.pem").read_bytes())
    svid = X509SVID.load(agent_dir / "svid.0.pem", agent_dir / "svid.0.key")
    assert str(verify_x509svid(svid, bundle)) == info["spiffe_id"]
    return svid


def test_register_writes_the_agent_directory(
    registry: RunningRegistry, operator: OperatorClient, tmp_path: Path
) -> None:
    client, reg = _new_agent(registry, operator, tmp_path, "tests/client-register")
    with client:
        agent_dir = tmp_path / "agent"
        key = load_identity(agent_dir)
        assert reg.created
        assert reg.did == str(key.did())
        assert reg.spiffe_id == f"spiffe://{TRUST_DOMAIN}/agent/{key.did().id}"
        svid = _check_on_disk(agent_dir, reg.did)
        assert svid.leaf.serial_number == reg.serial_number
        for name, mode in [
            ("identity.key", 0o600),
            ("svid.0.key", 0o600),
            ("svid.0.pem", 0o644),
            ("bundle.0.pem", 0o644),
            ("agent.json", 0o644),
        ]:
            assert stat.S_IMODE((agent_dir / name).stat().st_mode) == mode, name
        assert stat.S_IMODE(agent_dir.stat().st_mode) == 0o700
        assert json.loads((agent_dir / "agent.json").read_text())["registry"] == registry.address
        # The registry recorded the inception history the agent signed.
        resolved = operator.resolve_did(reg.did)
        assert resolved.agent.status is AgentStatus.ACTIVE
        assert resolved.agent.name == "tests/client-register"
        assert [k.kid for k in resolved.keys] == [key.kid]


def test_reregistration_after_a_restart_keeps_the_did(
    registry: RunningRegistry, operator: OperatorClient, tmp_path: Path
) -> None:
    first, reg = _new_agent(registry, operator, tmp_path, "tests/client-restart")
    first.close()
    # A restart: a new client over the same directory, no token, no bundle, no address.
    with AgentClient(None, tmp_path / "agent") as again:
        reg2 = again.register()
        assert reg2.did == reg.did
        assert not reg2.created
        assert reg2.serial_number != reg.serial_number
        _check_on_disk(tmp_path / "agent", reg.did)
        assert again.register().did == reg.did
    names = [a.name for a in operator.list_agents()]
    assert names.count("tests/client-restart") == 1


def test_retry_with_the_same_token_is_idempotent(
    registry: RunningRegistry, operator: OperatorClient, tmp_path: Path
) -> None:
    token = operator.create_token("tests/client-retry")
    with AgentClient(
        registry.address, tmp_path / "a", registry.bundle_pem, mtls_registry=registry.mtls_address
    ) as client:
        one = client.register(token.token)
        two = client.register(token.token)
    assert one.did == two.did
    assert (one.created, two.created) == (True, False)


def test_first_registration_needs_a_token(registry: RunningRegistry, tmp_path: Path) -> None:
    with AgentClient(registry.address, tmp_path / "empty", registry.bundle_pem) as client:
        with pytest.raises(MeshError, match="join token"):
            client.register()
    assert not (tmp_path / "empty" / "identity.key").exists()


def test_a_registry_of_another_trust_domain_is_refused(
    registry: RunningRegistry, operator: OperatorClient, tmp_path: Path
) -> None:
    token = operator.create_token("tests/client-td")
    with AgentClient(
        registry.address, tmp_path / "a", registry.bundle_pem, trust_domain="other.example"
    ) as client:
        with pytest.raises(ResponseError, match=r"other\.example"):
            client.register(token.token)
    assert not (tmp_path / "a" / "svid.0.pem").exists()


def test_renew_rotates_the_svid_key_and_keeps_working(
    registry: RunningRegistry, operator: OperatorClient, tmp_path: Path
) -> None:
    client, reg = _new_agent(registry, operator, tmp_path, "tests/client-renew")
    with client:
        key_before = (tmp_path / "agent" / "svid.0.key").read_bytes()
        renewed = client.renew()
        assert renewed.did == reg.did and not renewed.created
        assert renewed.serial_number != reg.serial_number
        assert (tmp_path / "agent" / "svid.0.key").read_bytes() != key_before
        svid = _check_on_disk(tmp_path / "agent", reg.did)
        assert svid.leaf.serial_number == renewed.serial_number
        # The swapped mTLS channel presents the new SVID.
        again = client.renew()
        assert again.serial_number not in (reg.serial_number, renewed.serial_number)


def test_jwt_svid_validates_against_the_bundle(
    registry: RunningRegistry, operator: OperatorClient, tmp_path: Path
) -> None:
    client, reg = _new_agent(registry, operator, tmp_path, "tests/client-jwt")
    with client:
        token = client.fetch_jwt_svid("billing-api", ttl=120)
        bundle = Bundle.parse(client.trust_bundle().spiffe_bundle, TRUST_DOMAIN)
        jwt = parse_and_validate_jwt_svid(token, bundle, "billing-api")
        assert str(jwt.spiffe_id) == reg.spiffe_id
        assert jwt.audience == ("billing-api",)
        with pytest.raises(MeshError):
            parse_and_validate_jwt_svid(token, bundle, "another-audience")
        details = client.fetch_jwt_svid_details(["a", "b"])
        assert details.spiffe_id == reg.spiffe_id
        assert details.expires_at is not None
        with pytest.raises(InvalidRequest):
            client.fetch_jwt_svid("x" * 300)


class _FakeSchedule:
    """An injected clock and wait: records every delay asked for, returns at once."""

    def __init__(self, now: datetime, waits_before_stop: int) -> None:
        self.now = now
        self.delays: list[float] = []
        self.left = waits_before_stop
        self.done = threading.Event()

    def clock(self) -> datetime:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.delays.append(seconds)
        self.left -= 1
        if self.left <= 0:
            self.done.set()
            return True  # "stopped": ends the loop
        return False


def test_background_renewal_renews_at_half_life(
    registry: RunningRegistry, operator: OperatorClient, tmp_path: Path
) -> None:
    client, reg = _new_agent(registry, operator, tmp_path, "tests/client-loop")
    with client:
        svid = client.svid
        life = (svid.expires_at - svid.issued_at).total_seconds()
        schedule = _FakeSchedule(svid.issued_at, waits_before_stop=3)
        renewed: list[Registration] = []
        loop = AgentClient(
            None,
            tmp_path / "agent",
            clock=schedule.clock,
            wait=schedule.wait,
            jitter=0.1,
            on_renewed=renewed.append,
        )
        with loop:
            loop.start_renewal()
            assert schedule.done.wait(60)
            loop.stop()
        # Each wait was until 45-55 % of the current SVID's life, from the injected "now".
        assert len(schedule.delays) == 3
        for delay in schedule.delays:
            assert 0.45 * life <= delay <= 0.55 * life
        assert len(renewed) == 2
        assert len({reg.serial_number, *(r.serial_number for r in renewed)}) == 3
        assert client.svid.leaf.serial_number == reg.serial_number  # the first client's cache
        assert _check_on_disk(tmp_path / "agent", reg.did).leaf.serial_number == (
            renewed[-1].serial_number
        )


def test_background_renewal_stops_when_the_agent_is_revoked(
    registry: RunningRegistry, operator: OperatorClient, tmp_path: Path
) -> None:
    errors: list[MeshError] = []
    client, reg = _new_agent(
        registry, operator, tmp_path, "tests/client-revoked", wait=lambda s: False,
        on_error=errors.append,
    )
    with client:
        operator.revoke_agent(reg.did, "test")
        client.start_renewal()
        client._thread.join(60)  # type: ignore[union-attr]
        assert not client.renewing
        assert isinstance(client.last_error, FailedPrecondition)
        assert errors == [client.last_error]
        with pytest.raises(FailedPrecondition):
            client.register()


# -- channels: retries and failover ---------------------------------------------------------


def _counting_bundle_op(calls: list[int]) -> Callable[[grpc.Channel], Any]:
    def op(ch: grpc.Channel) -> Any:
        calls.append(1)
        stub = svid_pb2_grpc.SVIDServiceStub(ch)
        return stub.GetTrustBundle(svid_pb2.GetTrustBundleRequest(), timeout=5)

    return op


def test_unavailable_is_retried_with_backoff(registry: RunningRegistry) -> None:
    sleeps: list[float] = []
    calls: list[int] = []
    policy = RetryPolicy(rounds=4, initial_backoff=0.1, max_backoff=1.0, jitter=0.5)
    address = f"127.0.0.1:{_closed_port()}"
    with RegistryChannel(
        address, TLSConfig(registry.bundle_pem), retry=policy, sleep=sleeps.append
    ) as channel:
        with pytest.raises(RegistryUnavailable) as info:
            channel.call(_counting_bundle_op(calls))
    assert len(calls) == 4
    assert len(sleeps) == 3
    for retry, delay in enumerate(sleeps):
        base = min(1.0, 0.1 * 2**retry)
        assert base / 2 <= delay <= base
    assert "mesh serve" in str(info.value) and address in str(info.value)


def test_failover_to_the_next_address(registry: RunningRegistry) -> None:
    sleeps: list[float] = []
    calls: list[int] = []
    dead = f"127.0.0.1:{_closed_port()}"
    with RegistryChannel(
        [dead, registry.address], TLSConfig(registry.bundle_pem), sleep=sleeps.append
    ) as channel:
        response = channel.call(_counting_bundle_op(calls))
        assert response.trust_domain == TRUST_DOMAIN
        assert channel.address == registry.address
        assert len(calls) == 2 and sleeps == []  # next address at once, no backoff
        channel.call(_counting_bundle_op(calls))
        assert len(calls) == 3  # stays on the address that works


def test_invalid_argument_is_not_retried(registry: RunningRegistry) -> None:
    sleeps: list[float] = []
    calls: list[int] = []
    tls = TLSConfig(registry.bundle_pem, registry.operator_cert, registry.operator_key)

    def op(ch: grpc.Channel) -> Any:
        calls.append(1)
        stub = tokens_pb2_grpc.JoinTokenServiceStub(ch)
        request = tokens_pb2.CreateJoinTokenRequest(agent_name="not a valid name!")
        return stub.CreateJoinToken(request, timeout=5)

    with RegistryChannel(registry.mtls_address, tls, sleep=sleeps.append) as channel:
        with pytest.raises(InvalidRequest, match="INVALID_ARGUMENT"):
            channel.call(op)
    assert calls == [1] and sleeps == []


def test_operator_client_round_trip(
    registry: RunningRegistry, operator: OperatorClient, tmp_path: Path
) -> None:
    created = operator.create_token("tests/client-op", ttl=300)
    listed = {t.id: t for t in operator.list_tokens()}
    assert listed[created.info.id].state() == "active"
    assert created.token not in repr(created)
    revoked = operator.revoke_token(created.info.id)
    assert revoked.revoked_at is not None
    with AgentClient(registry.address, tmp_path / "a", registry.bundle_pem) as client:
        with pytest.raises(MeshError, match="UNAUTHENTICATED"):
            client.register(created.token)
    client2, reg = _new_agent(registry, operator, tmp_path / "b", "tests/client-op2")
    with client2:
        assert operator.get_agent(reg.did).status is AgentStatus.ACTIVE
        terminated = operator.terminate_agent(reg.did, "kill switch test")
        assert terminated.status is AgentStatus.TERMINATED
        assert terminated.revoke_reason == "kill switch test"
        dids = {a.did for a in operator.list_agents(AgentStatus.TERMINATED)}
        assert reg.did in dids
    with pytest.raises(MeshError, match="did:mesh"):
        operator.get_agent("not-a-did")


def test_swapping_credentials_lets_calls_in_flight_finish(registry: RunningRegistry) -> None:
    seen: list[grpc.Channel] = []
    with RegistryChannel(registry.address, TLSConfig(registry.bundle_pem)) as channel:

        def op(ch: grpc.Channel) -> Any:
            seen.append(ch)
            if len(seen) == 1:
                # A renewal swaps the channel while this call is in flight...
                channel.update_tls(TLSConfig(registry.bundle_pem))
            # ...and the call still completes on the channel it started on.
            return svid_pb2_grpc.SVIDServiceStub(ch).GetTrustBundle(
                svid_pb2.GetTrustBundleRequest(), timeout=5
            )

        assert channel.call(op).trust_domain == TRUST_DOMAIN
        assert channel.call(op).trust_domain == TRUST_DOMAIN
        assert seen[0] is not seen[1]
        # The replaced channel was closed once its last call returned.
        with pytest.raises(ValueError):
            svid_pb2_grpc.SVIDServiceStub(seen[0]).GetTrustBundle(
                svid_pb2.GetTrustBundleRequest(), timeout=5
            )


def test_an_agent_may_not_call_operator_methods(
    registry: RunningRegistry, operator: OperatorClient, tmp_path: Path
) -> None:
    client, _ = _new_agent(registry, operator, tmp_path, "tests/client-not-operator")
    with client:
        chain_pem, key_pem = client.dir.read_svid()
        tls = TLSConfig(client.dir.read_bundle(), chain_pem, key_pem)
        as_agent = OperatorClient(registry.address, tls=tls, mtls_registry=registry.mtls_address)
        with as_agent, pytest.raises(PermissionDenied):
            as_agent.list_agents()


def test_encrypted_identity_key_and_metadata(
    registry: RunningRegistry, operator: OperatorClient, tmp_path: Path
) -> None:
    token = operator.create_token("tests/client-passphrase")
    agent_dir = tmp_path / "agent"
    kw: dict[str, Any] = {"mtls_registry": registry.mtls_address}
    with AgentClient(
        registry.address, agent_dir, registry.bundle_pem, passphrase=b"correct horse", **kw
    ) as client:
        reg = client.register(token.token, {"team": "billing", "zone": "eu-1"})
    assert b"ENCRYPTED PRIVATE KEY" in (agent_dir / "identity.key").read_bytes()
    assert operator.get_agent(reg.did).metadata == {"team": "billing", "zone": "eu-1"}
    with AgentClient(None, agent_dir, passphrase=b"correct horse") as again:
        assert again.register().did == reg.did
    with AgentClient(None, agent_dir) as no_passphrase:
        with pytest.raises(MeshError, match="passphrase"):
            no_passphrase.register()


def test_renewal_loop_reregisters_when_the_svid_is_not_accepted(
    registry: RunningRegistry, operator: OperatorClient, tmp_path: Path
) -> None:
    """An SVID the registry does not hold on record (UNAUTHENTICATED) -> re-register by key."""
    from cryptography.hazmat.primitives import serialization

    from mesh.client._internal.flow import new_svid_key

    client, reg = _new_agent(registry, operator, tmp_path, "tests/client-unknown-svid")
    client.close()
    # A certificate from the registry's CA that was never recorded as issued to this agent.
    key, csr = new_svid_key()
    chain = registry.ca.issue_x509_svid(csr, reg.spiffe_id)
    agent_dir = tmp_path / "agent"
    (agent_dir / "svid.0.pem").write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    )
    (agent_dir / "svid.0.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    renewed: list[Registration] = []
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        return len(waits) > 1

    with AgentClient(None, agent_dir, wait=wait, on_renewed=renewed.append) as loop:
        with pytest.raises(MeshError, match="UNAUTHENTICATED"):
            loop.renew()
        loop.start_renewal()
        loop._thread.join(60)  # type: ignore[union-attr]
        assert loop.last_error is None
    assert len(renewed) == 1 and renewed[0].did == reg.did and not renewed[0].created
    assert _check_on_disk(agent_dir, reg.did).leaf.serial_number == renewed[0].serial_number


def test_registration_fails_over_to_a_live_registry(
    registry: RunningRegistry, operator: OperatorClient, tmp_path: Path
) -> None:
    dead, dead_mtls = f"127.0.0.1:{_closed_port()}", f"127.0.0.1:{_closed_port()}"
    token = operator.create_token("tests/client-failover")
    with AgentClient(
        [dead, registry.address],
        tmp_path / "agent",
        registry.bundle_pem,
        mtls_registry=[dead_mtls, registry.mtls_address],
    ) as client:
        reg = client.register(token.token)
        assert reg.created
        assert client.renew().did == reg.did
        assert client.fetch_jwt_svid("failover")
    info = json.loads((tmp_path / "agent" / "agent.json").read_text())
    assert info["registry"] == f"{dead},{registry.address}"
    assert info["registry_mtls"] == f"{dead_mtls},{registry.mtls_address}"
