"""The registry commands through the installed ``mesh`` script, against the real registry."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fixtures_registry import TRUST_DOMAIN, RunningRegistry

from mesh.bundle import Bundle
from mesh.cli import _load_groups, cli
from mesh.svid import parse_and_validate_jwt_svid

MESH = str(Path(sys.executable).with_name("mesh"))


def run(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [MESH, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def run_json(*args: str, cwd: Path) -> Any:
    return json.loads(run(*args, "--json", cwd=cwd).stdout)


@pytest.fixture
def op(registry: RunningRegistry) -> list[str]:
    """Options every operator command gets."""
    return [
        "--registry",
        registry.address,
        "--registry-mtls",
        registry.mtls_address,
        "--data-dir",
        str(registry.config.data_dir),
    ]


def test_token_register_list_revoke(
    registry: RunningRegistry, op: list[str], tmp_path: Path
) -> None:
    created = run_json(
        "token", "create", "--name", "tests/cli-flow", "--ttl", "10m", *op, cwd=tmp_path
    )
    assert set(created) >= {"token", "id", "expires_at"}

    agent_dir = tmp_path / "agent"
    registered = run_json(
        "register",
        "--registry",
        registry.address,
        "--registry-mtls",
        registry.mtls_address,
        "--bundle",
        str(registry.server.bundle_path),
        "--token",
        created["token"],
        "--out",
        str(agent_dir),
        cwd=tmp_path,
    )
    did = registered["did"]
    assert registered["created"] is True
    for name in (
        "identity.key",
        "identity.pub",
        "key-history.json",
        "svid.0.pem",
        "svid.0.key",
        "bundle.0.pem",
        "agent.json",
    ):
        assert (agent_dir / name).is_file(), name
    # No key material in what was printed.
    assert "PRIVATE KEY" not in json.dumps(registered)

    # Re-registration after a restart: no token, no bundle, no address; same DID on stdout.
    again = run("register", "--out", str(agent_dir), cwd=tmp_path)
    assert again.stdout.strip() == did
    assert "re-registered" in again.stderr

    agents = run_json("agent", "list", *op, cwd=tmp_path)
    mine = [a for a in agents if a["did"] == did]
    assert len(mine) == 1 and mine[0]["status"] == "active" and mine[0]["name"] == "tests/cli-flow"
    shown = run_json("agent", "show", did, *op, cwd=tmp_path)
    assert shown["spiffe_id"] == registered["spiffe_id"]
    table = run("agent", "list", *op, cwd=tmp_path).stdout
    assert did in table and "tests/cli-flow" in table

    tokens = run_json("token", "list", "--all", *op, cwd=tmp_path)
    used = [t for t in tokens if t["id"] == created["id"]]
    assert used and used[0]["state"] == "used" and used[0]["used_by_did"] == did
    assert all("token" not in t for t in tokens)  # never the secrets

    jwt = run(
        "jwt-svid",
        "fetch",
        "--audience",
        "billing-api",
        "--agent-dir",
        str(agent_dir),
        cwd=tmp_path,
    ).stdout.strip()
    spiffe = run(
        "bundle", "show", "--format", "spiffe", *op[:2], "--data-dir", op[-1], cwd=tmp_path
    ).stdout
    bundle = Bundle.parse(spiffe, TRUST_DOMAIN)
    assert (
        str(parse_and_validate_jwt_svid(jwt, bundle, "billing-api").spiffe_id)
        == (registered["spiffe_id"])
    )
    pem = run(
        "bundle", "show", "--registry", registry.address, "--data-dir", op[-1], cwd=tmp_path
    ).stdout
    assert pem.startswith("-----BEGIN CERTIFICATE-----")

    revoked = run_json("agent", "revoke", did, "--reason", "cli test", *op, cwd=tmp_path)
    assert revoked["status"] == "revoked" and revoked["revoke_reason"] == "cli test"
    assert [
        a["did"] for a in run_json("agent", "list", "--status", "revoked", *op, cwd=tmp_path)
    ].count(did) == 1

    # A revoked agent gets nothing more: non-zero exit, one line saying why.
    denied = run(
        "jwt-svid",
        "fetch",
        "--audience",
        "x",
        "--agent-dir",
        str(agent_dir),
        cwd=tmp_path,
        ok=False,
    )
    assert denied.returncode != 0
    assert denied.stderr.startswith("error: ") and len(denied.stderr.strip().splitlines()) == 1
    assert "revoked" in denied.stderr


def test_token_revoke_and_terminate(
    registry: RunningRegistry, op: list[str], tmp_path: Path
) -> None:
    created = run_json("token", "create", "--name", "tests/cli-revoke", *op, cwd=tmp_path)
    revoked = run_json("token", "revoke", created["id"], *op, cwd=tmp_path)
    assert revoked["state"] == "revoked"
    failed = run(
        "register",
        "--registry",
        registry.address,
        "--bundle",
        str(registry.server.bundle_path),
        "--token",
        created["token"],
        "--out",
        str(tmp_path / "a"),
        cwd=tmp_path,
        ok=False,
    )
    assert failed.returncode == 1 and "UNAUTHENTICATED" in failed.stderr

    token = run("token", "create", "--name", "tests/cli-term", *op, cwd=tmp_path).stdout.strip()
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    did = run(
        "register",
        "--registry",
        registry.address,
        "--registry-mtls",
        registry.mtls_address,
        "--bundle",
        str(registry.server.bundle_path),
        "--token-file",
        str(token_file),
        "--out",
        str(tmp_path / "b"),
        cwd=tmp_path,
    ).stdout.strip()
    assert did.startswith("did:mesh:")
    terminated = run_json("agent", "terminate", did, "--reason", "kill", *op, cwd=tmp_path)
    assert terminated["status"] == "terminated"


def test_errors_are_one_line_with_a_reason(
    registry: RunningRegistry, op: list[str], tmp_path: Path
) -> None:
    bad_name = run("token", "create", "--name", "not a name!", *op, cwd=tmp_path, ok=False)
    assert bad_name.returncode == 1 and "INVALID_ARGUMENT" in bad_name.stderr
    assert len(bad_name.stderr.strip().splitlines()) == 1

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = run(
        "agent",
        "list",
        "--registry",
        f"127.0.0.1:{port}",
        "--data-dir",
        op[-1],
        cwd=tmp_path,
        ok=False,
    )
    assert down.returncode == 1 and "mesh serve" in down.stderr

    no_data = run("token", "list", "--data-dir", str(tmp_path / "nowhere"), cwd=tmp_path, ok=False)
    assert no_data.returncode == 1 and "bundle.pem" in no_data.stderr

    no_agent = run(
        "jwt-svid",
        "fetch",
        "--audience",
        "a",
        "--agent-dir",
        str(tmp_path / "x"),
        cwd=tmp_path,
        ok=False,
    )
    assert no_agent.returncode == 1 and "register" in no_agent.stderr

    bad_ttl = run("token", "create", "--name", "a", "--ttl", "soon", *op, cwd=tmp_path, ok=False)
    assert bad_ttl.returncode == 2 and "duration" in bad_ttl.stderr

    no_token = run(
        "register",
        "--registry",
        registry.address,
        "--bundle",
        str(registry.server.bundle_path),
        "--out",
        str(tmp_path / "fresh"),
        cwd=tmp_path,
        ok=False,
    )
    assert no_token.returncode == 1 and "join token" in no_token.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["register"],
        ["token", "create"],
        ["token", "list"],
        ["token", "revoke"],
        ["agent", "list"],
        ["agent", "show"],
        ["agent", "revoke"],
        ["agent", "terminate"],
        ["bundle", "show"],
        ["jwt-svid", "fetch"],
    ],
)
def test_help(command: list[str]) -> None:
    # In-process (the flows above go through the installed script): one startup, not ten.
    _load_groups()
    result = CliRunner().invoke(cli, [*command, "--help"], prog_name="mesh")
    assert result.exit_code == 0, result.output
    assert "Usage: mesh " + " ".join(command) in result.output
