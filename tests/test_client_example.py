"""examples/boot_registration.py runs against the real registry and prints no secrets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fixtures_registry import RunningRegistry

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "boot_registration.py"


def test_boot_registration_example(registry: RunningRegistry, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "--registry",
            registry.address,
            "--registry-mtls",
            registry.mtls_address,
            "--data-dir",
            str(registry.config.data_dir),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "registered did:mesh:" in out and "(created=True)" in out
    assert "same DID True, created=False" in out
    assert "renewed: serial" in out
    assert "signature verified against the trust bundle" in out
    assert "is active" in out
    assert "PRIVATE KEY" not in out and "eyJ" not in out  # no keys, no JWT
