"""examples/enforcer.py against the real registry: the gated tool is refused after
the pushed demotion."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fixtures_registry import TRUST_DOMAIN, RunningRegistry

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "enforcer.py"


def test_enforcer_example(registry: RunningRegistry) -> None:
    done = subprocess.run(
        [
            sys.executable, str(EXAMPLE),
            "--registry", registry.address,
            "--registry-mtls", registry.mtls_address,
            "--data-dir", str(registry.config.data_dir),
            "--trust-domain", TRUST_DOMAIN,
        ],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "tool: deployed billing" in out
    assert "monitor:" in out and "it now runs in ring 3" in out
    assert "tool: deploy refused:" in out and "effective ring is 3" in out
    assert out.count("tool: read runbook") == 2
