"""``mesh message verify --registry``: the sender resolved through the real registry."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from fixtures_registry import RunningRegistry

from mesh.agentdir import AgentDir
from mesh.cli.message import message
from mesh.envelope import sign_message
from mesh.v1 import agents_pb2

ME = "spiffe://test.mesh/agent/me"


def verify(registry: RunningRegistry, wire: bytes, *extra: object) -> Result:
    args = [
        "verify", "--registry", registry.address, "--registry-mtls", registry.mtls_address,
        "--audience", ME, *extra,
    ]
    return CliRunner().invoke(message, [str(a) for a in args], input=wire)


def operator_args(registry: RunningRegistry) -> list[object]:
    return ["--data-dir", registry.config.data_dir]


def test_the_sender_is_resolved_through_the_registry(registry: RunningRegistry) -> None:
    alice = registry.register("cli/alice")
    wire = sign_message(alice.identity, alice.did, "text/plain", b"hello", ME).to_json()
    result = verify(registry, wire.encode(), *operator_args(registry))
    assert result.exit_code == 0, result.output
    assert result.stdout == "hello"


def test_an_agent_can_verify_with_its_own_svid(registry: RunningRegistry, tmp_path: Path) -> None:
    alice, bob = registry.register("cli/alice2"), registry.register("cli/bob2")
    directory = AgentDir(tmp_path / "bob")
    key_pem = bob.tls_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    directory.write_svid(bob.chain_pem(), key_pem)
    directory.write_bundle(registry.bundle_pem)
    wire = sign_message(alice.identity, alice.did, "text/plain", b"hi bob", ME).to_json()
    result = verify(registry, wire.encode(), "--agent-dir", directory.path)
    assert result.exit_code == 0, result.output
    assert result.stdout == "hi bob"


def test_a_revoked_sender_is_refused(registry: RunningRegistry) -> None:
    alice = registry.register("cli/revoked")
    registry.agents(registry.operator()).RevokeAgent(
        agents_pb2.RevokeAgentRequest(did=alice.did, reason="test"), timeout=30
    )
    wire = sign_message(alice.identity, alice.did, "text/plain", b"x", ME).to_json()
    result = verify(registry, wire.encode(), *operator_args(registry))
    assert result.exit_code == 1
    assert "error: RevokedKey:" in result.stderr
    assert "revoked" in result.stderr


def test_an_unreachable_registry_fails_closed(registry: RunningRegistry) -> None:
    alice = registry.register("cli/unreachable")
    wire = sign_message(alice.identity, alice.did, "text/plain", b"x", ME).to_json()
    args = [
        "verify", "--registry", "127.0.0.1:1", "--registry-mtls", "127.0.0.1:1",
        "--audience", ME, *operator_args(registry),
    ]
    result = CliRunner().invoke(message, [str(a) for a in args], input=wire.encode())
    assert result.exit_code == 1
    assert "error: KeyStatusUnavailable:" in result.stderr


def test_registry_and_static_keys_are_exclusive(registry: RunningRegistry) -> None:
    result = verify(registry, b"{}", "--public-key", "x", *operator_args(registry))
    assert result.exit_code == 2
    assert "not both" in result.output


def test_a_shared_replay_guard_accepts_a_message_once_across_runs(
    registry: RunningRegistry, redis_url: str
) -> None:
    import uuid

    alice = registry.register("cli/replayed")
    wire = sign_message(alice.identity, alice.did, "text/plain", b"once", ME).to_json().encode()
    shared = ["--replay", redis_url, "--replay-namespace", f"test:{uuid.uuid4().hex}"]
    first = verify(registry, wire, *operator_args(registry), *shared)
    assert first.exit_code == 0, first.output
    second = verify(registry, wire, *operator_args(registry), *shared)
    assert second.exit_code == 1
    assert "error: Replayed:" in second.stderr
    # Without the shared guard each run remembers only its own messages.
    assert verify(registry, wire, *operator_args(registry)).exit_code == 0
