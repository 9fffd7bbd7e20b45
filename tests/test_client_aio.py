"""AsyncAgentClient (grpc.aio) end to end against the real registry."""

from __future__ import annotations

import asyncio
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc.aio
import pytest
from fixtures_registry import TRUST_DOMAIN, RunningRegistry

from mesh.bundle import Bundle
from mesh.client import (
    AsyncAgentClient,
    AsyncRegistryChannel,
    FailedPrecondition,
    InvalidRequest,
    OperatorClient,
    RegistryUnavailable,
    RetryPolicy,
    TLSConfig,
)
from mesh.client.types import Registration
from mesh.keys import load_identity
from mesh.svid import X509SVID, parse_and_validate_jwt_svid, verify_x509svid
from mesh.v1 import svid_pb2, svid_pb2_grpc


@pytest.fixture(scope="module")
def operator(registry: RunningRegistry) -> Any:
    client = OperatorClient.from_data_dir(
        registry.config.data_dir, registry.address, mtls_registry=registry.mtls_address
    )
    yield client
    client.close()


def _client(registry: RunningRegistry, agent_dir: Path, **kw: Any) -> AsyncAgentClient:
    return AsyncAgentClient(
        registry.address,
        agent_dir,
        registry.bundle_pem,
        mtls_registry=registry.mtls_address,
        **kw,
    )


def test_register_restart_renew_jwt(
    registry: RunningRegistry, operator: OperatorClient, tmp_path: Path
) -> None:
    token = operator.create_token("tests/aio").token
    agent_dir = tmp_path / "agent"

    async def scenario() -> None:
        async with _client(registry, agent_dir) as client:
            reg = await client.register(token)
            assert reg.created and reg.did == str(load_identity(agent_dir).did())
        async with AsyncAgentClient(None, agent_dir) as again:
            reg2 = await again.register()
            assert (reg2.did, reg2.created) == (reg.did, False)
            renewed = await again.renew()
            assert renewed.serial_number not in (reg.serial_number, reg2.serial_number)
            bundle = Bundle.from_x509_pem(TRUST_DOMAIN, (agent_dir / "bundle.0.pem").read_bytes())
            svid = X509SVID.load(agent_dir / "svid.0.pem", agent_dir / "svid.0.key")
            assert str(verify_x509svid(svid, bundle)) == reg.spiffe_id
            assert svid.leaf.serial_number == renewed.serial_number
            jwt = await again.fetch_jwt_svid("aio-audience")
            spiffe = Bundle.parse((await again.trust_bundle()).spiffe_bundle, TRUST_DOMAIN)
            checked = parse_and_validate_jwt_svid(jwt, spiffe, "aio-audience")
            assert str(checked.spiffe_id) == reg.spiffe_id
            with pytest.raises(InvalidRequest):
                await again.fetch_jwt_svid(["ok", "y" * 300])

    asyncio.run(scenario())


def test_background_renewal_task_renews_at_half_life(
    registry: RunningRegistry, operator: OperatorClient, tmp_path: Path
) -> None:
    token = operator.create_token("tests/aio-loop").token
    agent_dir = tmp_path / "agent"
    delays: list[float] = []
    renewed: list[Registration] = []

    async def scenario() -> None:
        async with _client(registry, agent_dir) as first:
            reg = await first.register(token)
            svid = first.svid
        life = (svid.expires_at - svid.issued_at).total_seconds()
        start: datetime = svid.issued_at

        async def wait(seconds: float) -> bool:
            delays.append(seconds)
            return len(delays) >= 3  # stop at the third wait

        async with AsyncAgentClient(
            None, agent_dir, clock=lambda: start, wait=wait, on_renewed=renewed.append
        ) as client:
            task = client.start_renewal()
            await asyncio.wait_for(task, 60)
            assert not client.renewing
        for delay in delays:
            assert 0.45 * life <= delay <= 0.55 * life
        assert len(renewed) == 2
        assert len({reg.serial_number, *(r.serial_number for r in renewed)}) == 3

    asyncio.run(scenario())


def test_revoked_agent_stops_the_renewal_task(
    registry: RunningRegistry, operator: OperatorClient, tmp_path: Path
) -> None:
    token = operator.create_token("tests/aio-revoked").token

    async def no_wait(seconds: float) -> bool:
        return False

    async def scenario() -> None:
        async with _client(registry, tmp_path / "a", wait=no_wait) as client:
            reg = await client.register(token)
            await asyncio.to_thread(operator.revoke_agent, reg.did, "aio test")
            await asyncio.wait_for(client.start_renewal(), 60)
            assert isinstance(client.last_error, FailedPrecondition)

    asyncio.run(scenario())


def test_async_channel_retries_unavailable_only(registry: RunningRegistry) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    sleeps: list[float] = []
    calls: list[str] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def op(ch: grpc.aio.Channel) -> Any:
        calls.append("x")
        stub = svid_pb2_grpc.SVIDServiceStub(ch)
        return await stub.GetTrustBundle(svid_pb2.GetTrustBundleRequest(), timeout=5)

    async def scenario() -> None:
        policy = RetryPolicy(rounds=3, initial_backoff=0.05)
        async with AsyncRegistryChannel(
            dead, TLSConfig(registry.bundle_pem), retry=policy, sleep=sleep
        ) as channel:
            with pytest.raises(RegistryUnavailable, match="mesh serve"):
                await channel.call(op)
        assert len(calls) == 3 and len(sleeps) == 2
        calls.clear()
        async with AsyncRegistryChannel(
            [dead, registry.address], TLSConfig(registry.bundle_pem), retry=policy, sleep=sleep
        ) as channel:
            response = await channel.call(op)
            assert response.trust_domain == TRUST_DOMAIN
            assert channel.address == registry.address
            # The channel is swapped (as on renewal) and keeps working.
            channel.update_tls(TLSConfig(registry.bundle_pem))
            await channel.call(op)
        assert len(calls) == 3 and len(sleeps) == 2

    asyncio.run(scenario())
