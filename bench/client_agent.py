"""The agent client's own costs, sequential, against a real registry (`mesh serve`).

One process runs the registry (SQLite in a temp data dir), this one the client.
Figures, per second, one call at a time:

* ``client_register_per_s``: AgentClient.register with a join token into a fresh
  directory (identity key made and saved, challenge, proof, CSR, Register, SVID
  validated against the bundle, 7 files written atomically); tokens made beforehand;
* ``client_reregister_per_s``: re-registration with the existing key (no token);
* ``client_renew_per_s``: renew over mTLS (new P-256 key + CSR, validation, writes,
  channel swap);
* ``client_jwt_svid_per_s``: fetch_jwt_svid on the current mTLS channel;
* ``client_trust_bundle_per_s``: GetTrustBundle on the TLS channel (the floor:
  one RPC plus bundle parsing).

Prints one flat JSON object. Rates swing run to run; compare ratios from one run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _trust_server import free_port_pair

from mesh.client import AgentClient, OperatorClient

ROOT = Path(__file__).resolve().parent.parent
SECONDS = 2.0


def _start(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port_pair()
    mesh = Path(sys.executable).with_name("mesh")
    proc = subprocess.Popen(
        [str(mesh), "serve", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}"],
        env={**os.environ, "MESH_LOG_LEVEL": "warning"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("mesh serve exited")
        if (data_dir / "operator" / "operator.key").exists():
            try:
                socket.create_connection(("127.0.0.1", port + 1), timeout=1).close()
                return proc, f"127.0.0.1:{port}"
            except OSError:
                pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("mesh serve did not start within 60 s")


def _rate(fn: Callable[[int], object], limit: int | None = None) -> float:
    fn(-1)  # warm up (connections, imports)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS and (limit is None or count < limit):
        fn(count)
        count += 1
    return round(count / (time.perf_counter() - start), 1)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        proc, address = _start(root / "data")
        try:
            results = _measure(root, address)
        finally:
            proc.terminate()
            proc.wait(30)
    print(json.dumps(results))


def _measure(root: Path, address: str) -> dict[str, float]:
    bundle = (root / "data" / "bundle.pem").read_bytes()
    with OperatorClient.from_data_dir(root / "data", address) as operator:
        tokens = [operator.create_token(f"bench/agent-{i}").token for i in range(400)]

    def register(i: int) -> None:
        with AgentClient(address, root / f"agent{i}", bundle) as client:
            client.register(tokens[i])

    out = {"client_register_per_s": _rate(register, limit=len(tokens) - 1)}
    with AgentClient(address, root / "agent-1") as client:
        out["client_reregister_per_s"] = _rate(lambda _: client.register())
        out["client_renew_per_s"] = _rate(lambda _: client.renew())
        out["client_jwt_svid_per_s"] = _rate(lambda _: client.fetch_jwt_svid("bench"))
        out["client_trust_bundle_per_s"] = _rate(lambda _: client.trust_bundle())
    return out


if __name__ == "__main__":
    main()
