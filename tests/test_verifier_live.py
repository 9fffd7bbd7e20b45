"""The peer verifier against the real registry: Watch-driven revocation, outage and staleness."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from fixtures_registry import RunningRegistry, _start
from test_watch_live import enforcer_tls

from mesh.client.channel import TLSConfig
from mesh.envelope import RevokedKey, Verifier, sign_message
from mesh.keys import IdentityKey
from mesh.v1 import agents_pb2
from mesh.verifier import KeyStatusUnavailable, PeerVerifier

ME = "spiffe://test.mesh/gateway/me"


def until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Wait for ``condition`` (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def refused(verifier: Verifier, identity: IdentityKey, did: str) -> bool:
    try:
        verifier.verify(sign_message(identity, did, "t", b"x", ME))
    except RevokedKey:
        return True
    return False


def test_a_revocation_reaches_the_verifier_through_the_stream(registry: RunningRegistry) -> None:
    alice = registry.register("peer/alice")
    bob = registry.register("peer/bob")
    keys = PeerVerifier.connect(
        registry.address, tls=enforcer_tls(registry), mtls_registry=registry.mtls_address
    )
    with keys:
        assert keys.wait_synced(30)
        assert keys.live
        verifier = Verifier(keys, audience=ME)
        verifier.verify(sign_message(alice.identity, alice.did, "t", b"1", ME))
        verifier.verify(sign_message(bob.identity, bob.did, "t", b"1", ME))
        fetches = keys.fetches
        registry.agents(registry.operator()).RevokeAgent(
            agents_pb2.RevokeAgentRequest(did=alice.did, reason="test"), timeout=30
        )
        # The event arrives on the stream; no message is needed to learn of it.
        assert until(lambda: keys._records[alice.did].status.value != "active")
        with pytest.raises(RevokedKey, match="revoked"):
            verifier.verify(sign_message(alice.identity, alice.did, "t", b"2", ME))
        # Bob is untouched and still answered from memory.
        verifier.verify(sign_message(bob.identity, bob.did, "t", b"2", ME))
        assert keys.fetches <= fetches + 1  # at most the one refresh of alice after the event


def test_a_termination_reaches_the_verifier_through_the_stream(registry: RunningRegistry) -> None:
    carol = registry.register("peer/carol")
    keys = PeerVerifier.connect(
        registry.address, tls=enforcer_tls(registry), mtls_registry=registry.mtls_address
    ).start()
    try:
        assert keys.wait_synced(30)
        verifier = Verifier(keys, audience=ME)
        verifier.verify(sign_message(carol.identity, carol.did, "t", b"1", ME))
        registry.agents(registry.operator()).TerminateAgent(
            agents_pb2.TerminateAgentRequest(did=carol.did, reason="kill"), timeout=30
        )
        assert until(lambda: refused(verifier, carol.identity, carol.did))
        with pytest.raises(RevokedKey, match="terminated"):
            verifier.verify(sign_message(carol.identity, carol.did, "t", b"2", ME))
    finally:
        keys.stop()


class Offset:
    """Real time, plus a jump we choose (to pass max_staleness without sleeping)."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead


def test_registry_outage_answers_from_cache_within_staleness_then_fails_closed(
    tmp_path: Path,
) -> None:
    registry = _start(tmp_path)
    stopped = False
    try:
        alice = registry.register("outage/alice")
        clock = Offset()
        tls: TLSConfig = enforcer_tls(registry)
        keys = PeerVerifier.connect(
            registry.address,
            tls=tls,
            mtls_registry=registry.mtls_address,
            max_staleness=timedelta(minutes=2),
            clock=clock,
        ).start()
        verifier = Verifier(keys, audience=ME, clock=clock, max_skew=timedelta(minutes=10))
        assert keys.wait_synced(30)
        verifier.verify(sign_message(alice.identity, alice.did, "t", b"1", ME))
        registry.stop()
        stopped = True
        assert until(lambda: not keys.live)
        # Within the staleness bound: answered from the cache.
        clock.ahead = 100
        now = datetime.fromtimestamp(clock(), UTC)
        verifier.verify(sign_message(alice.identity, alice.did, "t", b"2", ME, now=now))
        # Past it: the registry cannot confirm, so the verifier refuses.
        clock.ahead = 121
        now = datetime.fromtimestamp(clock(), UTC)
        with pytest.raises(KeyStatusUnavailable, match="could not be asked"):
            verifier.verify(sign_message(alice.identity, alice.did, "t", b"3", ME, now=now))
        keys.stop()
    finally:
        if not stopped:
            registry.stop()


def test_the_peer_verification_example_runs(registry: RunningRegistry) -> None:
    import subprocess
    import sys

    example = Path(__file__).resolve().parent.parent / "examples" / "peer_verification.py"
    result = subprocess.run(
        [
            sys.executable,
            str(example),
            "--registry",
            registry.address,
            "--registry-mtls",
            registry.mtls_address,
            "--data-dir",
            str(registry.config.data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any("bob accepted" in line and "hello bob" in line for line in lines)
    assert any("bob REFUSED: Replayed" in line for line in lines)
    after = lines[next(i for i, line in enumerate(lines) if "after the revocation" in line) :]
    assert any("bob REFUSED: RevokedKey" in line for line in after)


def _rotate(registry: RunningRegistry, agent: object) -> tuple[IdentityKey, datetime]:
    """Rotate ``agent``'s identity key through KeyService.RotateKey (its own SVID)."""
    from mesh.v1 import rotation_pb2, rotation_pb2_grpc

    new = IdentityKey.generate()
    at = datetime.now(UTC)
    history = agent.history.rotate(agent.identity, new, at)  # type: ignore[attr-defined]
    rotation_pb2_grpc.KeyServiceStub(agent.channel()).RotateKey(  # type: ignore[attr-defined]
        rotation_pb2.RotateKeyRequest(key_history=history.to_json()), timeout=30
    )
    return new, at


def _outcome(verifier: Verifier, key: IdentityKey, did: str, at: datetime) -> str:
    try:
        verifier.verify(sign_message(key, did, "t", b"x", ME, now=at))
    except RevokedKey:
        return "RevokedKey"
    return "accepted"


def test_rotation_race_through_the_stream(registry: RunningRegistry) -> None:
    alice = registry.register("peer/rotating")
    keys = PeerVerifier.connect(
        registry.address, tls=enforcer_tls(registry), mtls_registry=registry.mtls_address
    ).start()
    try:
        assert keys.wait_synced(30)
        verifier = Verifier(keys, audience=ME)
        old = alice.identity
        verifier.verify(sign_message(old, alice.did, "t", b"0", ME))
        # Issued-at has whole seconds: let the key be older than the "second before" probe.
        time.sleep(1.5)
        new, rotated = _rotate(registry, alice)
        assert until(lambda: keys._records[alice.did].current_kid == new.kid)
        # Signed just before the rotation with the old key: accepted (grace 24 h).
        assert _outcome(verifier, old, alice.did, rotated - timedelta(seconds=1)) == "accepted"
        # Signed at or just after it with the old key: refused.
        assert _outcome(verifier, old, alice.did, rotated) == "RevokedKey"
        assert _outcome(verifier, old, alice.did, rotated + timedelta(seconds=1)) == "RevokedKey"
        # The new key verifies at once, from the refreshed history.
        assert _outcome(verifier, new, alice.did, rotated + timedelta(seconds=1)) == "accepted"
    finally:
        keys.stop()


def test_a_compromised_key_is_refused_from_its_time_on(registry: RunningRegistry) -> None:
    from google.protobuf.timestamp_pb2 import Timestamp

    from mesh.v1 import rotation_pb2, rotation_pb2_grpc

    bob = registry.register("peer/compromised")
    keys = PeerVerifier.connect(
        registry.address, tls=enforcer_tls(registry), mtls_registry=registry.mtls_address
    ).start()
    try:
        assert keys.wait_synced(30)
        verifier = Verifier(keys, audience=ME)
        now = datetime.now(UTC).replace(microsecond=0)
        verifier.verify(sign_message(bob.identity, bob.did, "t", b"0", ME, now=now))
        # Reported for a moment just ahead (the key is only seconds old): signatures
        # from then on are refused, those before it stand.
        since = now + timedelta(seconds=10)
        stamp = Timestamp()
        stamp.FromDatetime(since)
        rotation_pb2_grpc.KeyServiceStub(registry.operator()).MarkKeyCompromised(
            rotation_pb2.MarkKeyCompromisedRequest(
                did=bob.did, kid=bob.identity.kid, compromised_at=stamp, reason="leaked"
            ),
            timeout=30,
        )
        assert until(
            lambda: keys._records[bob.did].keys[bob.identity.kid].compromised_at is not None
        )
        assert _outcome(verifier, bob.identity, bob.did, since - timedelta(seconds=1)) == (
            "accepted"
        )
        assert _outcome(verifier, bob.identity, bob.did, since) == "RevokedKey"
        assert _outcome(verifier, bob.identity, bob.did, since + timedelta(seconds=5)) == (
            "RevokedKey"
        )
    finally:
        keys.stop()


def test_an_agent_credential_follows_its_peers_identity_events(
    registry: RunningRegistry,
) -> None:
    agent = registry.register("peer/agent-watch")
    key_pem = agent.tls_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    as_agent = PeerVerifier.connect(
        registry.address,
        tls=TLSConfig(registry.bundle_pem, agent.chain_pem(), key_pem),
        mtls_registry=registry.mtls_address,
    )
    as_enforcer = PeerVerifier.connect(
        registry.address, tls=enforcer_tls(registry), mtls_registry=registry.mtls_address
    )
    assert as_agent._subscription is not None
    assert as_enforcer._subscription is not None
    as_agent.start()
    try:
        assert as_agent.wait_synced(20)
    finally:
        as_agent.stop()
    # The agent's verifier still resolves through the registry with its SVID.
    verifier = Verifier(as_agent, audience=ME)
    verifier.verify(sign_message(agent.identity, agent.did, "t", b"x", ME))
