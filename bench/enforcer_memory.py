"""Peak RSS of an Enforcer holding 100,000 agents, and how fast it answers.

A `mesh serve` subprocess over a store pre-filled with N agents; a child process
runs an Enforcer (real mTLS stream, snapshot of every agent) and reports:

  enforcer_agents                 agents in its state after the snapshot
  enforcer_sync_s                 connect + snapshot of all of them
  enforcer_rss_baseline_mb        RSS after imports, before connecting
  enforcer_peak_rss_mb            peak RSS (VmHWM) once synced
  enforcer_rss_per_agent_bytes    (RSS synced - baseline) / agents
  enforcer_allowed_ns             one allowed(did, ring) call (mean over 1M, mixed dids)
  registry_rss_after_snapshot_mb  the registry's RSS after serving that snapshot

N defaults to 100,000 (BENCH_ENFORCER_AGENTS overrides).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _trust_server import Server, child_env, populate, write_tls

N = int(os.environ.get("BENCH_ENFORCER_AGENTS", "100000"))

CHILD = r"""
import json, random, sys, time
from pathlib import Path

def status():
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0]) / 1024
    return out

from mesh.enforcer import Enforcer
creds, address, mtls, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
base = status()["VmRSS"]
t0 = time.perf_counter()
enforcer = Enforcer.from_dir(creds, address, mtls_registry=mtls).start()
assert enforcer.wait_synced(600), enforcer.last_error
sync_s = time.perf_counter() - t0
st = status()
dids = [d for d in list(enforcer.state._agents)[:1000]] + ["did:mesh:unknown"] * 10
rng = random.Random(1)
sample = [rng.choice(dids) for _ in range(1000)]
allowed = enforcer.allowed
loops = 1000
t0 = time.perf_counter()
for _ in range(loops):
    for d in sample:
        allowed(d, 2)
per_ns = (time.perf_counter() - t0) / (loops * len(sample)) * 1e9
agents = len(enforcer.state)
enforcer.stop()
print(json.dumps({
    "enforcer_agents": agents,
    "enforcer_sync_s": round(sync_s, 2),
    "enforcer_rss_baseline_mb": round(base, 1),
    "enforcer_peak_rss_mb": round(st["VmHWM"], 1),
    "enforcer_rss_per_agent_bytes": round((st["VmRSS"] - base) * 1024 * 1024 / max(agents, 1)),
    "enforcer_allowed_ns": round(per_ns, 1),
}))
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        populate(data, N)
        server = Server(data)
        try:
            creds = Path(tmp) / "enforcer"
            write_tls(server.enforcer_tls("bench-memory"), creds)
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(creds), server.address, server.mtls_address,
                 str(N)],
                env=child_env(), capture_output=True, text=True, timeout=900,
            )
            if done.returncode != 0:
                raise SystemExit(done.stderr)
            out = json.loads(done.stdout.strip().splitlines()[-1])
            out["registry_rss_after_snapshot_mb"] = server.rss_mb()[0]
        finally:
            server.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
