"""`mesh db upgrade` and `mesh audit verify` against a real data directory."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from fixtures_registry import RunningRegistry
from sqlalchemy import text

from registry.cli import audit, commands, db


def test_commands_are_exported() -> None:
    assert {"serve", "db", "audit"} <= {c.name for c in commands()}


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = CliRunner().invoke(db, ["upgrade", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert "schema at revision" in result.output
    assert (data / "registry.db").exists()
    assert (data.stat().st_mode & 0o777) == 0o700
    again = CliRunner().invoke(db, ["upgrade", "--data-dir", str(data)])
    assert again.exit_code == 0


def test_audit_verify_intact_then_tampered(registry: RunningRegistry) -> None:
    registry.register("cli/audit")
    data = str(registry.config.data_dir)
    ok = CliRunner().invoke(audit, ["verify", "--data-dir", data])
    assert ok.exit_code == 0, ok.output
    assert "intact" in ok.output
    with registry.store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1"))
    bad = CliRunner().invoke(audit, ["verify", "--data-dir", data])
    assert bad.exit_code == 1
    assert "damaged at entry 1" in bad.output
