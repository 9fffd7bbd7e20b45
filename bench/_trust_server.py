"""Helpers for the trust benches: a `mesh serve` subprocess over a store pre-filled
with N agents, and enforcer credentials for subscribers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from mesh.client.channel import TLSConfig

TRUST_DOMAIN = "bench.mesh"


def free_port_pair() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < 65535:
            with socket.socket() as s2:
                try:
                    s2.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port


def did_of(i: int) -> str:
    # A well-formed did:mesh (base58 of 20 bytes), so the registry accepts it in filters.
    import hashlib

    import base58

    digest = hashlib.sha256(i.to_bytes(8, "big")).digest()[:20]
    return "did:mesh:" + base58.b58encode(digest).decode()


def populate(data_dir: Path, n: int, database_url: str | None = None) -> list[str]:
    """Migrate a fresh store (SQLite in ``data_dir``, or ``database_url``) and insert
    ``n`` active agents."""
    from registry.store import open_store
    from registry.store.schema import Agent, AgentKey, TrustState

    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = open_store(database_url, data_dir)
    store.upgrade()
    now = datetime.now(UTC) - timedelta(minutes=5)
    dids = [did_of(i + 1) for i in range(n)]
    agents = [
        {
            "did": did, "name": f"bench/{i}", "spiffe_id": f"spiffe://{TRUST_DOMAIN}/agent/{i}",
            "status": "active", "granted_ring": 2, "metadata": {}, "created_at": now,
            "updated_at": now, "revoked_at": None, "revoke_reason": None,
        }
        for i, did in enumerate(dids)
    ]
    keys = [
        {
            "did": did, "key_index": 0, "kid": f"k{i:042d}", "public_key": bytes(32),
            "valid_from": now, "rotated_at": None, "compromised_at": None,
        }
        for i, did in enumerate(dids)
    ]
    # Already scored (medium, ring 2) and not due for a day: the registry's scheduler
    # leaves them alone, so the figures measure streaming, not a recompute.
    scored = datetime.now(UTC)
    states = [
        {
            "did": did, "score": 575, "tier": "medium", "effective_ring": 2, "dirty": False,
            "next_due_at": scored + timedelta(days=1), "computed_at": scored,
            "updated_at": scored,
        }
        for did in dids
    ]
    with store.transaction() as tx:
        for table, rows in (
            (Agent.__table__, agents), (AgentKey.__table__, keys), (TrustState.__table__, states)
        ):
            for start in range(0, len(rows), 10_000):
                tx.unit.execute(insert(table), rows[start : start + 10_000])  # type: ignore[arg-type]
    store.close()
    return dids


class Server:
    """`mesh serve` in a subprocess (its own process, so its RSS is its own)."""

    def __init__(self, data_dir: Path, *, recompute_interval: float = 3600.0) -> None:
        self.data_dir = data_dir
        self.port = free_port_pair()
        self.address = f"127.0.0.1:{self.port}"
        self.mtls_address = f"127.0.0.1:{self.port + 1}"
        mesh = Path(sys.executable).with_name("mesh")
        command = [
            str(mesh), "serve", "--data-dir", str(data_dir), "--listen", self.address,
            "--trust-domain", TRUST_DOMAIN, "--log-format", "json",
        ]
        env = {
            **os.environ,
            "MESH_LOG_LEVEL": "warning",
            "MESH_TRUST_RECOMPUTE_INTERVAL_SECONDS": str(recompute_interval),
            "MESH_WORKER_THREADS": "8",
        }
        # Logs to a file: an unread pipe would fill and stall the server.
        self.log_path = data_dir.parent / "server.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=self._log
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                errors = self.log_path.read_text(errors="replace")
                raise SystemExit(f"mesh serve exited: {errors}")
            if (data_dir / "operator" / "operator.pem").exists():
                try:
                    with socket.create_connection(("127.0.0.1", self.port + 1), timeout=0.2):
                        return
                except OSError:
                    pass
            time.sleep(0.1)
        self.proc.kill()
        raise SystemExit("mesh serve did not start within 120 s")

    def rss_mb(self) -> tuple[float, float]:
        """(current RSS, peak RSS) of the server process, in MB."""
        fields: dict[str, float] = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) / 1024
        return round(fields["VmRSS"], 1), round(fields["VmHWM"], 1)

    def operator_tls(self) -> TLSConfig:
        from mesh.client.operator import operator_tls

        return operator_tls(self.data_dir)

    def enforcer_tls(self, name: str) -> TLSConfig:
        from mesh.spiffeid import TrustDomain
        from registry.ca.certificate_authority import CertificateAuthority
        from registry.principals import issue_principal
        from registry.store import open_store

        ca = CertificateAuthority.open(self.data_dir, TrustDomain.parse(TRUST_DOMAIN))
        store = open_store(None, self.data_dir)
        try:
            cred = issue_principal(ca, store, "enforcer", name)
        finally:
            store.close()
        return TLSConfig(
            root_pem=(self.data_dir / "bundle.pem").read_bytes(),
            cert_chain_pem=cred.issued.chain_pem(),
            private_key_pem=cred.issued.private_key_pem(),
        )

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


def write_tls(tls: TLSConfig, directory: Path) -> None:
    """Files a child process can load (enforcer.pem/.key, bundle.pem)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    assert tls.cert_chain_pem is not None and tls.private_key_pem is not None
    (directory / "enforcer.pem").write_bytes(tls.cert_chain_pem)
    (directory / "enforcer.key").write_bytes(tls.private_key_pem)
    os.chmod(directory / "enforcer.key", 0o600)
    (directory / "bundle.pem").write_bytes(tls.root_pem)


def child_env() -> dict[str, Any]:
    root = str(Path(__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
