"""Demotion propagation: from the registry's commit to receipt by 1 and by 1,000
concurrent Watch subscribers (loopback, real mTLS), and the registry's memory
while it serves 1,000 subscribers.

A `mesh serve` subprocess; the subscribers live in child processes (grpc.aio,
enforcer credential, ring-change events only), spread the way real enforcers
are separate processes: 1 subscriber in one child, 1,000 over
BENCH_PROPAGATION_PROCS children (default 4, 250 streams each, 100 streams per
connection). Every child shares this machine's cores with the registry.

Once every stream has received a warm-up event, the bench demotes one agent
every 50 ms with GrantRing (ring 3: demoted at once, a RING_CHANGED event
committed in the same transaction). Each receipt's latency is its arrival time
minus the event's timestamp (taken by the committing transaction just before it
commits), on the same host clock.

  propagation_<n>_p50_ms / _p99_ms / _max_ms   per (event, subscriber) receipt
  propagation_<n>_receipts                     receipts measured (events x subscribers)
  propagation_<n>_server_cpu_us_per_receipt    registry CPU (all threads, from /proc) over
                                               the demotions, per receipt; for n = 1 it is
                                               mostly the GrantRing call and its commit
  propagation_<n>_client_cpu_us_per_receipt    the subscriber processes' CPU, per receipt
  propagation_<n>_processes                    subscriber processes
  registry_rss_mb_idle                         before any subscriber
  registry_rss_mb_1000_subscribers             with 1,000 subscribers attached

BENCH_PROPAGATION_COUNTS (default "1,1000"), _PROCS (default 4) and _EVENTS (100)
change the runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _trust_server import Server, child_env, populate, write_tls

from mesh.client.trust import TrustClient

EVENTS = int(os.environ.get("BENCH_PROPAGATION_EVENTS", "100"))
#: Subscriber counts, one run each (1 alone in its process; more spread over PROCESSES).
COUNTS = [int(n) for n in os.environ.get("BENCH_PROPAGATION_COUNTS", "1,1000").split(",")]
PROCESSES = int(os.environ.get("BENCH_PROPAGATION_PROCS", "4"))
PACE_S = 0.05
STREAMS_PER_CONNECTION = 100

CHILD = r"""
import asyncio, json, sys, time
import grpc
from mesh.client.channel import TLSConfig
from mesh.v1 import events_pb2, events_pb2_grpc
from pathlib import Path

creds, address = sys.argv[1], sys.argv[2]
n, start, expected, per_channel = (int(a) for a in sys.argv[3:7])
root = Path(creds)
tls = TLSConfig.from_files(root / "bundle.pem", root / "enforcer.pem", root / "enforcer.key")

async def main():
    channels = [grpc.aio.secure_channel(address, tls.credentials(), tls.options())
                for _ in range(max(1, -(-n // per_channel)))]
    latencies = []
    warm = [0]
    ready = asyncio.Event()

    async def one(i):
        stub = events_pb2_grpc.EventServiceStub(channels[i % len(channels)])
        call = stub.Watch(events_pb2.WatchRequest(
            from_sequence=start, types=[events_pb2.EVENT_TYPE_RING_CHANGED]))
        got = 0
        async for item in call:
            now = time.time()
            kind = item.WhichOneof("item")
            if kind in ("snapshot", "snapshot_batch"):
                continue  # from_sequence 0: a snapshot first, holding the warm-up
            if got == 0:  # the warm-up event, or the snapshot that already holds it
                warm[0] += 1
                if warm[0] == n:
                    ready.set()
            else:
                at = item.event.at
                latencies.append(now - (at.seconds + at.nanos / 1e9))
            got += 1
            if got > expected:
                break
        call.cancel()

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    await ready.wait()
    print("ready", flush=True)
    cpu = time.process_time()
    await asyncio.wait_for(asyncio.gather(*tasks), 600)
    cpu = time.process_time() - cpu
    for ch in channels:
        await ch.close()
    print(json.dumps({"latencies": latencies, "cpu_s": cpu}), flush=True)

asyncio.run(main())
"""


def run(
    server: Server, client: TrustClient, creds: Path, dids: list[str], n: int, processes: int
) -> dict[str, Any]:
    # Warm-up: a demotion committed before the subscribers start; each stream catches up
    # to it, so "ready" means every stream is attached and live.
    start = client.recompute([dids[0]])["last_sequence"] or _latest(server)
    client.grant_ring(dids[0], 3, "warm-up")
    processes = max(1, min(processes, n))
    shares = [n // processes + (1 if i < n % processes else 0) for i in range(processes)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(creds), server.mtls_address, str(share),
             str(start), str(len(dids) - 1), str(STREAMS_PER_CONNECTION)],
            env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for share in shares
    ]
    for child in children:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            errors = child.stderr.read() if child.stderr else ""
            raise SystemExit(f"subscribers did not start: {errors}")
    out: dict[str, Any] = {}
    if n >= 1000:
        out["registry_rss_mb_1000_subscribers"] = server.rss_mb()[0]
    server_cpu = _cpu_seconds(server.proc.pid)
    for did in dids[1:]:
        client.grant_ring(did, 3, "bench demotion")
        time.sleep(PACE_S)
    latencies: list[float] = []
    client_cpu = 0.0
    for child in children:
        assert child.stdout is not None
        line = child.stdout.readline()
        child.wait(120)
        if not line.strip():
            raise SystemExit(child.stderr.read() if child.stderr else "no result")
        figures = json.loads(line)
        latencies.extend(figures["latencies"])
        client_cpu += figures["cpu_s"]
    server_cpu = _cpu_seconds(server.proc.pid) - server_cpu
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2)

    receipts = len(latencies)
    out.update(
        {
            f"propagation_{n}_p50_ms": pct(0.50),
            f"propagation_{n}_p99_ms": pct(0.99),
            f"propagation_{n}_max_ms": round(latencies[-1] * 1000, 2),
            f"propagation_{n}_receipts": receipts,
            f"propagation_{n}_server_cpu_us_per_receipt": round(server_cpu / receipts * 1e6, 1),
            f"propagation_{n}_client_cpu_us_per_receipt": round(client_cpu / receipts * 1e6, 1),
            f"propagation_{n}_processes": processes,
        }
    )
    return out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, every thread included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _latest(server: Server) -> int:
    from registry.store import open_store

    store = open_store(None, server.data_dir)
    try:
        return store.latest_event_seq()
    finally:
        store.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        dids = populate(data, len(COUNTS) * (EVENTS + 1))
        server = Server(data)
        try:
            time.sleep(2)  # the scheduler's first run scores every agent
            creds = Path(tmp) / "enforcer"
            write_tls(server.enforcer_tls("bench-propagation"), creds)
            out: dict[str, Any] = {"registry_rss_mb_idle": server.rss_mb()[0]}
            with TrustClient(
                server.address, tls=server.operator_tls(), mtls_registry=server.mtls_address
            ) as client:
                client.recompute(everything=True)
                for i, n in enumerate(COUNTS):
                    batch = dids[i * (EVENTS + 1) : (i + 1) * (EVENTS + 1)]
                    out.update(run(server, client, creds, batch, n, 1 if n == 1 else PROCESSES))
        finally:
            server.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
