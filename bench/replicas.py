"""Registry replicas on one PostgreSQL: 1 replica against 3, on this machine.

Real ``mesh serve`` processes on loopback (tests/_cluster.py), a fresh database
per configuration. All processes -- replicas, PostgreSQL and the load
generator -- share the machine's cores, so 3 replicas cannot multiply the
throughput of 1 here; the figures show what replication costs and what it
keeps (no lost event, bounded propagation), not a scale-out on more hardware.

  replicas_<n>_registrations_per_s     GetChallenge + Register (Ed25519 proof, CSR,
                                       one transaction), 32 callers spread over the
                                       replicas, pre-made keys and CSRs
  replicas_<n>_demotion_p50_ms / _p99_ms
                                       GrantRing(ring 3) on replica 1 to receipt of the
                                       RING_CHANGED event by 30 subscribers spread over
                                       the replicas (arrival - the event's commit-time
                                       timestamp); with 3 replicas two thirds of the
                                       receipts cross replicas via LISTEN/NOTIFY
  replicas_rss_agents / _subscribers   the load of the memory figure: 100,000 agents in
                                       the database, 1,000 Watch subscribers over 3
                                       replicas (3 of them take a full 100,000-agent
                                       snapshot), then 200 demotions
  replicas_rss_peak_mb_max / _min      the largest / smallest replica peak RSS (VmHWM)
  replicas_rss_mb_per_replica          the three peaks, replica 1 first (a string)

BENCH_REPLICAS_AGENTS overrides the 100,000.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import grpc  # noqa: E402
from _cluster import Cluster  # noqa: E402
from _trust_server import populate  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from mesh.client import OperatorClient  # noqa: E402
from mesh.client.trust import TrustClient, credential_tls  # noqa: E402
from mesh.keys import IdentityKey  # noqa: E402
from mesh.registration import sign_proof  # noqa: E402
from mesh.v1 import (  # noqa: E402
    events_pb2,
    events_pb2_grpc,
    registration_pb2,
    registration_pb2_grpc,
)

REGISTRATIONS = 600
CALLERS = 32
DEMOTIONS = 100
PROPAGATION_SUBSCRIBERS = 30
RSS_AGENTS = int(os.environ.get("BENCH_REPLICAS_AGENTS", "100000"))
RSS_SUBSCRIBERS = 1000
RSS_DEMOTIONS = 200
QUIET = {"MESH_LOG_LEVEL": "warning", "MESH_TRUST_RECOMPUTE_INTERVAL_SECONDS": "3600"}


def note(text: str) -> None:
    """Progress on stderr (stdout carries only the JSON result)."""
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def _csr() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(
        key, hashes.SHA256()
    )
    return csr.public_bytes(serialization.Encoding.DER)


def registrations(cluster: Cluster) -> tuple[float, list[str]]:
    with OperatorClient(
        cluster.addresses, tls=cluster.operator_tls(), mtls_registry=cluster.mtls_addresses
    ) as operator:
        tokens = [operator.create_token(f"bench/{i}").token for i in range(REGISTRATIONS)]
    work = [(IdentityKey.generate(), _csr(), token) for token in tokens]
    creds = grpc.ssl_channel_credentials(root_certificates=cluster.bundle_pem)
    channels = [grpc.secure_channel(a, creds) for a in cluster.addresses]
    dids: list[str] = []
    failures: list[str] = []
    lock = threading.Lock()
    cursor = iter(range(len(work)))

    def caller(c: int) -> None:
        stub = registration_pb2_grpc.RegistrationServiceStub(channels[c % len(channels)])
        while True:
            with lock:
                i = next(cursor, None)
            if i is None:
                return
            identity, csr, token = work[i]
            try:
                challenge = stub.GetChallenge(registration_pb2.GetChallengeRequest(), timeout=30)
                proof = sign_proof(identity, challenge.trust_domain, challenge.nonce, csr)
                response = stub.Register(
                    registration_pb2.RegisterRequest(
                        join_token=token, public_key=identity.public_key,
                        challenge=challenge.nonce, proof=proof, csr=csr,
                    ),
                    timeout=30,
                )
            except grpc.RpcError as exc:
                with lock:
                    failures.append(str(exc.code()))
                continue
            with lock:
                dids.append(response.did)

    threads = [threading.Thread(target=caller, args=(c,)) for c in range(CALLERS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    elapsed = time.perf_counter() - started
    for channel in channels:
        channel.close()
    if failures:
        note(f"{len(failures)} registrations failed: {sorted(set(failures))}")
    return len(dids) / elapsed, dids


class Subscribers:
    """``n`` Watch streams (ring changes) spread over the replicas, in a thread of their own."""

    def __init__(self, cluster: Cluster, creds: Path, n: int, *, snapshots: int = 0) -> None:
        self.cluster, self.creds, self.n, self.snapshots = cluster, creds, n, snapshots
        self.latencies: list[float] = []
        self.ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self, from_sequence: int) -> None:
        self.from_sequence = from_sequence
        self._thread.start()
        if not self.ready.wait(600):
            raise SystemExit("subscribers did not attach within 600 s")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        tls = credential_tls(self.creds, "enforcer")
        per_replica = max(1, self.n // 100)
        channels = [
            grpc.aio.secure_channel(address, tls.credentials())
            for address in self.cluster.mtls_addresses
            for _ in range(per_replica)
        ]
        attached = [0]

        def attached_one() -> None:
            attached[0] += 1
            if attached[0] == self.n:
                self.ready.set()

        async def one(j: int) -> None:
            replica = j % len(self.cluster.replicas)
            channel = channels[replica * per_replica + (j // 3) % per_replica]
            full = j < self.snapshots
            # Tail streams start just before the warm-up event: receiving it means
            # the stream is live. Snapshot streams are live after SnapshotDone.
            call = events_pb2_grpc.EventServiceStub(channel).Watch(
                events_pb2.WatchRequest(
                    from_sequence=0 if full else self.from_sequence - 1,
                    types=[events_pb2.EVENT_TYPE_RING_CHANGED],
                )
            )
            live = False
            async for item in call:
                if item.HasField("snapshot_done"):
                    live = True
                    attached_one()
                elif item.HasField("event"):
                    if not live:
                        live = True
                        attached_one()
                        continue
                    at = item.event.at
                    self.latencies.append(time.time() - (at.seconds + at.nanos / 1e9))

        tasks = [asyncio.create_task(one(j)) for j in range(self.n)]
        await self._stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close()


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2)


def demotions(cluster: Cluster, dids: list[str], creds: Path, subscribers: Subscribers) -> None:
    first = cluster.first
    with TrustClient(
        first.address, tls=cluster.operator_tls(), mtls_registry=first.mtls_address
    ) as client:
        for did in dids:
            client.grant_ring(did, 3, "bench demotion")
            time.sleep(0.05)
    time.sleep(1.0)


def warm_up(cluster: Cluster, dids: list[str]) -> int:
    """Ring changes before the subscribers start; the last one's sequence (at least 2,
    so that ``from_sequence = seq - 1`` never asks for a full snapshot)."""
    first = cluster.first
    with TrustClient(
        first.address, tls=cluster.operator_tls(), mtls_registry=first.mtls_address
    ) as client:
        for did in dids:
            client.grant_ring(did, 3, "bench warm-up")
    seq = int(cluster.query("SELECT coalesce(max(seq), 0) FROM events")[0][0])
    assert seq >= 2, seq
    return seq


def one_configuration(root: Path, size: int) -> dict[str, Any]:
    with Cluster(root / f"c{size}", size, extra_env=QUIET) as cluster:
        cluster.start()
        note(f"{size} replica(s) up")
        rate, dids = registrations(cluster)
        note(f"{len(dids)} registrations at {rate:.0f}/s")
        with TrustClient(
            cluster.first.address, tls=cluster.operator_tls(),
            mtls_registry=cluster.first.mtls_address,
        ) as client:
            client.recompute(everything=True)
        creds = cluster.principal("enforcer", root / f"enforcer{size}")
        subscribers = Subscribers(cluster, creds, PROPAGATION_SUBSCRIBERS)
        subscribers.start(warm_up(cluster, dids[-2:]))
        note("subscribers live")
        demotions(cluster, dids[:DEMOTIONS], creds, subscribers)
        note("demotions done")
        subscribers.stop()
        latencies = subscribers.latencies
        return {
            f"replicas_{size}_registrations_per_s": round(rate, 1),
            f"replicas_{size}_demotion_p50_ms": _percentile(latencies, 0.50),
            f"replicas_{size}_demotion_p99_ms": _percentile(latencies, 0.99),
            f"replicas_{size}_demotion_receipts": len(latencies),
        }


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == "VmHWM":
            return round(int(value.split()[0]) / 1024, 1)
    return 0.0


def memory(root: Path) -> dict[str, Any]:
    cluster = Cluster(root / "rss", 3, extra_env=QUIET)
    try:
        # The database first, filled, then the replicas on it.
        cluster.create_database()
        dids = populate(root / "populate", RSS_AGENTS, cluster.database_url)
        note(f"{RSS_AGENTS} agents in the database")
        cluster.start(120, create_database=False)
        with TrustClient(
            cluster.first.address, tls=cluster.operator_tls(),
            mtls_registry=cluster.first.mtls_address,
        ) as client:
            client.recompute([*dids[:RSS_DEMOTIONS], *dids[-2:]])
        creds = cluster.principal("enforcer", root / "enforcer-rss")
        subscribers = Subscribers(cluster, creds, RSS_SUBSCRIBERS, snapshots=3)
        subscribers.start(warm_up(cluster, dids[-2:]))
        note(f"{RSS_SUBSCRIBERS} subscribers live")
        demotions(cluster, dids[:RSS_DEMOTIONS], creds, subscribers)
        peaks = [_peak_mb(r.pid) for r in cluster.replicas]
        subscribers.stop()
    finally:
        cluster.close()
    return {
        "replicas_rss_agents": RSS_AGENTS,
        "replicas_rss_subscribers": RSS_SUBSCRIBERS,
        "replicas_rss_peak_mb_max": max(peaks),
        "replicas_rss_peak_mb_min": min(peaks),
        "replicas_rss_mb_per_replica": " ".join(str(p) for p in peaks),
    }


def main() -> None:
    import signal

    # A timeout (run_all) stops us with SIGTERM: unwind, so every replica is stopped
    # and every database dropped (the replicas run in sessions of their own).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        out.update(one_configuration(root, 1))
        out.update(one_configuration(root, 3))
        out.update(memory(root))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
