"""``mesh principal create``, ``mesh signals report``, ``mesh trust report|watch|recompute``
and ``mesh ring grant`` against the real registry."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner, Result
from fixtures_registry import RunningRegistry

from mesh.cli.ring import ring
from mesh.cli.signals import signals
from mesh.cli.trust import trust
from registry.principals_cli import principal


def run(command: object, registry: RunningRegistry, *args: object) -> Result:
    base = [
        "--registry", registry.address,
        "--registry-mtls", registry.mtls_address,
        "--data-dir", str(registry.config.data_dir),
    ]
    result = CliRunner().invoke(command, [str(a) for a in args] + base)  # type: ignore[arg-type]
    return result


def test_trust_cli_end_to_end(registry: RunningRegistry, tmp_path: Path) -> None:
    agent = registry.register("cli/worker")
    creds = tmp_path / "reporter"
    created = CliRunner().invoke(
        principal,
        ["create", "--kind", "reporter", "--name", "cli-sre", "--out", str(creds),
         "--data-dir", str(registry.config.data_dir), "--trust-domain", "test.mesh"],
    )
    assert created.exit_code == 0, created.output
    assert (creds / "reporter.key").stat().st_mode & 0o777 == 0o600
    again = CliRunner().invoke(
        principal,
        ["create", "--kind", "reporter", "--name", "cli-sre", "--out", str(creds),
         "--data-dir", str(registry.config.data_dir), "--trust-domain", "test.mesh"],
    )
    assert again.exit_code != 0 and "already exists" in str(again.exception)

    first = run(trust, registry, "recompute", agent.did, "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["examined"] == 1

    reported = run(
        signals, registry, "report", agent.did, "--success-rate", "0.05",
        "--error-budget", "0", "--violation", "critical:exfiltrated data",
        "--report-id", "cli-1", "--credentials", creds, "--json",
    )
    assert reported.exit_code == 0, reported.output
    assert json.loads(reported.output) == {
        "report_id": "cli-1", "agent_did": agent.did, "duplicate": False
    }
    bad = run(signals, registry, "report", agent.did, "--violation", "oops",
              "--credentials", creds)
    assert bad.exit_code != 0 and "SEVERITY:REASON" in str(bad.exception.hint)  # type: ignore[union-attr]
    out_of_range = run(signals, registry, "report", agent.did, "--success-rate", "1.5",
                       "--credentials", creds)
    assert out_of_range.exit_code == 2 and "1.5" in out_of_range.output

    recomputed = run(trust, registry, "recompute", agent.did, "--json")
    assert json.loads(recomputed.output)["changed"] == 1

    shown = run(trust, registry, "report", agent.did, "--json")
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.output)
    assert doc["effective_ring"] == 3 and doc["score"] < 400
    assert doc["factors"][0]["name"] == "success_rate"
    assert len(doc["history"]) == 2
    human = run(trust, registry, "report", agent.did)
    assert human.exit_code == 0 and "breakdown" in human.output and "sandbox" in human.output
    listing = run(trust, registry, "report", "--json")
    assert agent.did in {r["did"] for r in json.loads(listing.output)}

    granted = run(ring, registry, "grant", agent.did, "system", "--reason", "trusted", "--json")
    assert granted.exit_code == 0, granted.output
    state = json.loads(granted.output)
    assert state["granted_ring"] == 1 and state["effective_ring"] == 3  # trust still limits
    wrong = run(ring, registry, "grant", agent.did, "root")
    assert wrong.exit_code != 0


def test_trust_watch_prints_one_json_line_per_event(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    agent = registry.register("cli/watched")
    start = registry.store.latest_event_seq()
    registry.agents(registry.operator())
    from mesh.v1 import agents_pb2

    registry.agents(registry.operator()).RevokeAgent(
        agents_pb2.RevokeAgentRequest(did=agent.did, reason="compromised")
    )
    data_dir = registry.config.data_dir
    proc = subprocess.Popen(
        [sys.executable, "-c", "from mesh.cli import main; main()", "trust", "watch",
         "--from-seq", str(start), "--agent", agent.did, "--json",
         "--registry", registry.address, "--registry-mtls", registry.mtls_address,
         "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
    finally:
        proc.kill()
        proc.wait(10)
    doc = json.loads(line)
    assert doc["kind"] == "event" and doc["type"] == "agent_revoked"
    assert doc["agent_did"] == agent.did and doc["sequence"] > start
    assert doc["state"]["status"] == "revoked" and doc["state"]["effective_ring"] == 3
    assert doc["details"]["reason"] == "compromised"
