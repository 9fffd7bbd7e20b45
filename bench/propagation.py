"""Demotion propagation: from the registry's commit to receipt by 1 and by 1,000
concurrent Watch subscribers (loopback, real mTLS), and the registry's memory
while it serves 1,000 subscribers.

A `mesh serve` subprocess; a child process holds the subscribers (grpc.aio,
enforcer credential, ring-change events only). Once every stream has received a
warm-up event, the bench demotes one agent every 50 ms with GrantRing (ring 3:
demoted at once, a RING_CHANGED event committed in the same transaction). Each
receipt's latency is its arrival time minus the event's timestamp (taken by the
committing transaction just before it commits), on the same host clock.

  propagation_<n>_p50_ms / _p99_ms / _max_ms   per (event, subscriber) receipt
  propagation_<n>_receipts                     receipts measured (events x subscribers)
  registry_rss_mb_idle                         before any subscriber
  registry_rss_mb_1000_subscribers             with 1,000 subscribers attached
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
PACE_S = 0.05

CHILD = r"""
import asyncio, json, sys, time
import grpc
from mesh.client.channel import TLSConfig
from mesh.v1 import events_pb2, events_pb2_grpc
from pathlib import Path

creds, address = sys.argv[1], sys.argv[2]
n, start, expected = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
root = Path(creds)
tls = TLSConfig.from_files(root / "bundle.pem", root / "enforcer.pem", root / "enforcer.key")

async def main():
    channels = [grpc.aio.secure_channel(address, tls.credentials(), tls.options())
                for _ in range(max(1, n // 100))]
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
    await asyncio.wait_for(asyncio.gather(*tasks), 600)
    for ch in channels:
        await ch.close()
    latencies.sort()
    def pct(p):
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2)
    print(json.dumps({"p50": pct(0.50), "p99": pct(0.99), "max": round(latencies[-1] * 1000, 2),
                      "receipts": len(latencies)}), flush=True)

asyncio.run(main())
"""


def run(
    server: Server, client: TrustClient, creds: Path, dids: list[str], n: int
) -> dict[str, Any]:
    # Warm-up: a demotion committed before the subscribers start; each stream catches up
    # to it from the table, so "ready" means every stream is attached and live.
    start = client.recompute([dids[0]])["last_sequence"] or _latest(server)
    client.grant_ring(dids[0], 3, "warm-up")
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(creds), server.mtls_address, str(n), str(start),
         str(len(dids) - 1)],
        env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    out: dict[str, Any] = {}
    if proc.stdout.readline().strip() != "ready":
        errors = proc.stderr.read() if proc.stderr else ""
        raise SystemExit(f"subscribers did not start: {errors}")
    if n >= 1000:
        out["registry_rss_mb_1000_subscribers"] = server.rss_mb()[0]
    for did in dids[1:]:
        client.grant_ring(did, 3, "bench demotion")
        time.sleep(PACE_S)
    result_line = proc.stdout.readline()
    proc.wait(120)
    if not result_line.strip():
        raise SystemExit(proc.stderr.read() if proc.stderr else "no result")
    figures = json.loads(result_line)
    out.update(
        {
            f"propagation_{n}_p50_ms": figures["p50"],
            f"propagation_{n}_p99_ms": figures["p99"],
            f"propagation_{n}_max_ms": figures["max"],
            f"propagation_{n}_receipts": figures["receipts"],
        }
    )
    return out


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
        dids = populate(data, 2 * (EVENTS + 1))
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
                out.update(run(server, client, creds, dids[: EVENTS + 1], 1))
                out.update(run(server, client, creds, dids[EVENTS + 1 :], 1000))
        finally:
            server.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
