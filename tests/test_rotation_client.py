"""Agent-side rotation against the real registry: AgentClient.rotate_key, the rotator, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mesh.client import AgentClient, CredentialRotator, OperatorClient, TLSConfig
from mesh.client._internal import rotation as key_rotation
from mesh.client.errors import FailedPrecondition
from mesh.keyhistory import KeyHistory
from mesh.keys import IdentityKey, load_identity, read_key_history, save_identity
from mesh.rotation import RotationSchedule
from tests.fixtures_registry import RunningRegistry, _start

MESH = str(Path(sys.executable).with_name("mesh"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    running = _start(Path(tmp_path_factory.mktemp("rotation-client")))
    try:
        yield running
    finally:
        running.stop()


def operator(registry: RunningRegistry) -> OperatorClient:
    return OperatorClient(
        registry.address,
        # The current bundle (a test may have rotated the CA).
        tls=TLSConfig(
            registry.server.bundle_path.read_bytes(), registry.operator_cert, registry.operator_key
        ),
        mtls_registry=registry.mtls_address,
    )


def agent(registry: RunningRegistry, directory: Path, age: timedelta | None = None,
          **options: Any) -> AgentClient:
    if age is not None:
        key = IdentityKey.generate()
        save_identity(directory, key, history=KeyHistory.incept(key, datetime.now(UTC) - age))
    client = AgentClient(
        registry.address, directory, registry.server.bundle_path.read_bytes(),
        mtls_registry=registry.mtls_address, **options,
    )
    client.register(registry.join_token("rotation/client"))
    return client


def registry_kid(registry: RunningRegistry, did: str) -> str:
    with operator(registry) as op:
        return op.resolve_did(did).agent.current_key.kid  # type: ignore[union-attr]


def test_rotate_key(registry: RunningRegistry, tmp_path: Path) -> None:
    rotated: list[Any] = []
    with agent(registry, tmp_path / "a", on_key_rotated=rotated.append) as client:
        did = client.info.did
        before = read_key_history(client.dir.path)
        assert before is not None
        signer = client.signer()
        assert signer.sign(b"{}", audience="peer").kid == before.current.kid
        result = client.rotate_key()
        # The directory and the signer switch at the rotation time, and not before.
        assert datetime.now(UTC) >= result.at
        assert signer.sign(b"{}", audience="peer").kid == result.kid
        assert signer.key_at(result.at - timedelta(seconds=1)).kid == before.current.kid
        after = read_key_history(client.dir.path)
        assert after is not None and len(after) == 2 and before.is_prefix_of(after)
        assert str(after.did) == did == result.did and result.rotated
        assert result.previous_kid == before.current.kid and result.kid == after.current.kid
        assert load_identity(client.dir.path).kid == result.kid
        assert not (client.dir.path / key_rotation.PENDING_HISTORY_FILE).exists()
        assert not (client.dir.path / "identity.key.next").exists()
        # Dated at a whole second, ahead of now (see RotatingSigner).
        assert result.at.microsecond == 0 and result.at > datetime.now(UTC) - timedelta(seconds=1)
        assert registry_kid(registry, did) == result.kid
        assert rotated == [result]
        # Renewal goes on; re-registration authenticates with the new key.
        client.renew()
        assert client.register().did == did


def test_interrupted_rotation_is_resumed(registry: RunningRegistry, tmp_path: Path) -> None:
    with agent(registry, tmp_path / "a") as client:
        # A crash after the new key and history were written, before the registry was told.
        pending = key_rotation.prepare(client.dir, None, datetime.now(UTC), timedelta(seconds=1))
        assert load_identity(client.dir.path).kid == pending.previous_kid  # nothing changed yet
        result = client.rotate_key()
        assert result.kid == pending.key.kid and result.rotated
        assert registry_kid(registry, client.info.did) == pending.key.kid


def test_stale_pending_rotation_is_made_afresh(registry: RunningRegistry, tmp_path: Path) -> None:
    with agent(registry, tmp_path / "a", age=timedelta(days=1)) as client:
        # Dated in the past and never submitted: resubmitting it would disown what the old
        # key signed since, so the client makes a new one.
        start = datetime.now(UTC) - timedelta(seconds=30)
        pending = key_rotation.prepare(client.dir, None, start, timedelta(seconds=1))
        result = client.rotate_key()
        assert result.kid != pending.key.kid and result.at > start + timedelta(seconds=5)
        assert registry_kid(registry, client.info.did) == result.kid


def test_refused_rotation_leaves_the_key(registry: RunningRegistry, tmp_path: Path) -> None:
    with agent(registry, tmp_path / "a") as client:
        kid = load_identity(client.dir.path).kid
        with operator(registry) as op:
            op.revoke_agent(client.info.did, "test")
        with pytest.raises(FailedPrecondition):
            client.rotate_key()
        assert load_identity(client.dir.path).kid == kid
        assert not (client.dir.path / key_rotation.PENDING_HISTORY_FILE).exists()


def test_renewal_rotates_past_the_hard_limit(registry: RunningRegistry, tmp_path: Path) -> None:
    with agent(registry, tmp_path / "a", age=timedelta(days=44)) as client:
        old = load_identity(client.dir.path).kid
        # 44 days at registration; the registry's policy says 45: make it 46 in the store.
        with registry.store.transaction() as tx:
            from sqlalchemy import update

            from registry.store.schema import AgentKey

            tx.unit.execute(
                update(AgentKey.__table__)
                .where(AgentKey.__table__.c.kid == old)
                .values(valid_from=datetime.now(UTC) - timedelta(days=46))
            )
        with pytest.raises(FailedPrecondition, match="key rotation required"):
            client.renew()
        client.auto_rotate = False
        with pytest.raises(FailedPrecondition):
            client._renew_or_reregister()
        client.auto_rotate = True
        registration = client._renew_or_reregister()
        assert registration.did == client.info.did
        assert load_identity(client.dir.path).kid != old


def test_rotator_schedule_in_compressed_time(registry: RunningRegistry, tmp_path: Path) -> None:
    now = [datetime.now(UTC)]
    with agent(registry, tmp_path / "a") as client:
        rotator = CredentialRotator(
            client,
            RotationSchedule(period=timedelta(days=30), jitter=timedelta(hours=6)),
            watch=False,
            bundle_refresh=None,
            clock=lambda: now[0],
            seed=7,
        )
        due = rotator.due_at()
        valid_from = read_key_history(client.dir.path).current.valid_from  # type: ignore[union-attr]
        assert valid_from + timedelta(days=30) - timedelta(hours=6) <= due
        assert due <= valid_from + timedelta(days=30)
        assert rotator.check() is None  # not due
        now[0] = due - timedelta(seconds=1)
        assert rotator.check() is None
        # Due by the rotator's clock; the client dates the rotation by its own (real) clock,
        # which the registry checks against its own.
        now[0] = due
        result = rotator.check()
        assert result is not None and rotator.rotations == 1
        # The new key's period starts over.
        assert rotator.due_at() >= result.at + timedelta(days=30) - timedelta(hours=6)
        now[0] = result.at + timedelta(days=1)
        assert rotator.check() is None


def test_jitter_spreads_a_fleet() -> None:
    from mesh.rotation import next_rotation_time

    at = datetime(2026, 1, 1, tzinfo=UTC)
    schedule = RotationSchedule()
    times = set()
    for _ in range(50):
        key = IdentityKey.generate()
        times.add(next_rotation_time(KeyHistory.incept(key, at), schedule, seed=1))
    assert len(times) == 50
    assert all(at + timedelta(days=30) - timedelta(hours=6) <= t <= at + timedelta(days=30)
               for t in times)
    key = IdentityKey.generate()
    history = KeyHistory.incept(key, at)
    assert next_rotation_time(history, schedule, 5) == next_rotation_time(history, schedule, 5)


def test_rotation_request_reaches_the_running_agent(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    with agent(registry, tmp_path / "a") as client:
        old = load_identity(client.dir.path).kid
        with CredentialRotator(client, bundle_refresh=None) as rotator:
            with operator(registry) as op:
                _wait_watch(rotator)
                op.request_rotation(client.info.did, "test")
            deadline = time.monotonic() + 20
            while rotator.rotations == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert rotator.rotations == 1, rotator.last_error
        assert load_identity(client.dir.path).kid != old


def _wait_watch(rotator: CredentialRotator) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        sub = rotator._subscription
        if sub is not None and sub._handler.position() > 0:  # type: ignore[attr-defined]
            return
        time.sleep(0.02)


def test_async_client_rotates(registry: RunningRegistry, tmp_path: Path) -> None:
    import asyncio

    from mesh.client import AsyncAgentClient

    async def scenario() -> None:
        directory = tmp_path / "aio"
        key = IdentityKey.generate()
        save_identity(directory, key,
                      history=KeyHistory.incept(key, datetime.now(UTC) - timedelta(days=44)))
        async with AsyncAgentClient(
            registry.address, directory, registry.server.bundle_path.read_bytes(),
            mtls_registry=registry.mtls_address,
        ) as client:
            await client.register(registry.join_token("rotation/aio"))
            result = await client.rotate_key()
            assert result.rotated and result.previous_kid == key.kid
            assert load_identity(directory).kid == result.kid
            assert registry_kid(registry, client.info.did) == result.kid
            # Past the hard limit, renewal rotates first (as the sync client does).
            with registry.store.transaction() as tx:
                from sqlalchemy import update

                from registry.store.schema import AgentKey

                tx.unit.execute(
                    update(AgentKey.__table__)
                    .where(AgentKey.__table__.c.kid == result.kid)
                    .values(valid_from=datetime.now(UTC) - timedelta(days=46))
                )
            with pytest.raises(FailedPrecondition, match="key rotation required"):
                await client.renew()
            await client._renew_or_reregister()
            assert load_identity(directory).kid != result.kid

    asyncio.run(scenario())


# -- the CLI, through the installed `mesh` script ---------------------------------------------


def mesh(*args: str, cwd: Path, code: int = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [MESH, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == code, (result.stdout, result.stderr)
    return result


def op_args(registry: RunningRegistry) -> list[str]:
    return ["--registry", registry.address, "--registry-mtls", registry.mtls_address,
            "--data-dir", str(registry.config.data_dir)]


def test_cli_rotate_directory_and_show(registry: RunningRegistry, tmp_path: Path) -> None:
    with agent(registry, tmp_path / "a") as client:
        did = client.info.did
    result = mesh("rotate-credentials", str(tmp_path / "a"), cwd=tmp_path)
    assert result.stdout.startswith(f"rotated {did}: ")
    doc = json.loads(
        mesh("rotate-credentials", str(tmp_path / "a"), "--json", cwd=tmp_path).stdout
    )
    assert doc["did"] == did and doc["rotated"] is True
    shown = json.loads(mesh("agent", "show", did, "--json", *op_args(registry),
                            cwd=tmp_path).stdout)
    assert len(shown["keys"]) == 3 and shown["key_age_seconds"] >= 0
    text = mesh("agent", "show", did, *op_args(registry), cwd=tmp_path).stdout
    assert "key_age" in text and "key history" in text
    # Compromise, then the agent must rotate before it renews.
    mesh("agent", "compromise-key", did, "--reason", "test", *op_args(registry), cwd=tmp_path)
    bad = mesh("agent", "compromise-key", did, "--at", "yesterday", *op_args(registry),
               cwd=tmp_path, code=2)
    assert "ISO 8601" in bad.stderr
    bad = mesh("rotate-credentials", cwd=tmp_path, code=2)
    assert "--all" in bad.stderr


def test_cli_rotate_all(registry: RunningRegistry, tmp_path: Path) -> None:
    clients = [agent(registry, tmp_path / f"a{i}", age=timedelta(days=40)) for i in range(3)]
    idle = agent(registry, tmp_path / "idle", age=timedelta(days=40))
    # A 60-day period: left alone they would not rotate yet; they do when asked.
    schedule = RotationSchedule(period=timedelta(days=60))
    rotators = [CredentialRotator(c, schedule, bundle_refresh=None).start() for c in clients]
    try:
        for r in rotators:
            _wait_watch(r)
        # The idle agent never rotates: the campaign ends with it pending, exit status 1.
        result = mesh("rotate-credentials", "--all", "--older-than", "35d", "--wait", "8s",
                      *op_args(registry), cwd=tmp_path, code=1)
        assert "not all rotated: 1 pending" in result.stdout, result.stdout
        assert idle.info.did in result.stdout
        assert "asked 4 agent(s)" in result.stderr and "rotated 3/4" in result.stderr
        for c in clients:
            assert len(read_key_history(c.dir.path) or []) == 2
        # Once the idle one is done too, nothing is due any more.
        idle.rotate_key()
        result = mesh("rotate-credentials", "--all", "--older-than", "35d",
                      *op_args(registry), cwd=tmp_path)
        assert "no agent is due" in result.stdout
    finally:
        for r in rotators:
            r.stop()
        for c in (*clients, idle):
            c.close()


def test_cli_ca(registry: RunningRegistry, tmp_path: Path) -> None:
    # Last in this module: it rotates the registry's CA under the fixture's bundle.
    status = json.loads(mesh("ca", "status", "--json", *op_args(registry), cwd=tmp_path).stdout)
    states = sorted((a["kind"], a["state"]) for a in status["authorities"])
    assert ("jwt", "active") in states and ("x509", "active") in states
    assert status["next_change"].startswith("prepare")
    prepared = json.loads(mesh("ca", "rotate", "--json", *op_args(registry), cwd=tmp_path).stdout)
    assert prepared["sequence"] > status["sequence"]
    assert sum(a["state"] == "prepared" for a in prepared["authorities"]) == 2
    refused = mesh("ca", "rotate", "--activate", *op_args(registry), cwd=tmp_path, code=1)
    assert "propagation delay" in refused.stderr
    forced = json.loads(
        mesh("ca", "rotate", "--force", "--json", *op_args(registry), cwd=tmp_path).stdout
    )
    assert sum(a["state"] == "retired" for a in forced["authorities"]) == 2
    assert sum(a["state"] == "active" for a in forced["authorities"]) == 2

