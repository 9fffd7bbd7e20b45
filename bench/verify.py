"""Verification rates, measured in one run so they compare as ratios.

* ``raw_verify_1core_per_s`` — PyNaCl strict Ed25519 verify (``mesh.ed25519``), one process.
* ``raw_verify_2proc_per_s`` — the same in two processes at once (sum of each
  process's verifies per CPU second: what two cores can do). The two processes
  live through the run and verify in short rounds alternating with the
  VerifyBatch rounds; ``raw_verify_2proc_wall_per_s`` is what they did per wall
  second in those rounds (equal to the former on an idle machine, lower when
  other work takes the cores, as the VerifyBatch figure is).
* ``peer_verifier_warm_per_s`` — the whole checklist (``mesh.envelope.Verifier``) with a
  :class:`mesh.verifier.PeerVerifier` whose cache is warm and live (following Watch)
  and an in-memory replay guard: what an agent or gateway gets per core.
* ``peer_resolve_and_verify_per_s`` — only the key lookup + the signature (the hot path).
* ``peer_verifier_2threads_per_s`` — the checklist in two threads of one process
  (libsodium releases the GIL; this is why the registry verifies with threads).
* ``batch_local_2threads_msgs_per_s`` / ``batch_local_2processes_msgs_per_s`` — the
  registry's per-message path (parse, checklist, verdict) over a 1000-message batch
  split between 2 threads, or 2 worker processes (requests and verdicts shipped as
  protobuf bytes): the measurement behind the registry's thread pool.
* ``verify_batch_msgs_per_s`` — ``VerifyService.VerifyBatch`` over gRPC against
  ``mesh serve`` in its own process: batches of 1000 binary envelopes, 2 in flight,
  in rounds alternating with the two-process raw rounds.

Ratios: warm verifier / raw one core (aim >= 0.85), VerifyBatch / raw two processes
(aim >= 0.6; also against the wall-clock two-process figure of the same rounds).
One-thread figures are per CPU second of the measuring thread, so other load on
the machine does not move them; the two-thread and gRPC figures are wall-clock
rates and fall when something else uses the cores. Also printed:
``verify_batch_msgs_per_server_cpu_s``, messages per CPU second of the registry
process (its user + system time over the gRPC rounds, from /proc),
``verify_batch_server_cores_busy``, that CPU time over the wall time (2.0: both cores
verifying), and ``verify_batch_client_cpu_us_per_msg``, the bench client's own CPU
per message (it shares the two cores; the request is built once). Prints one flat
JSON object.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from registration import _start_server, _stop

from mesh.client.channel import TLSConfig
from mesh.ed25519 import verify_strict
from mesh.envelope import Envelope, Verifier, sign_message
from mesh.keyhistory import KeyHistory
from mesh.keys import IdentityKey
from mesh.registration import sign_proof
from mesh.replay import MemoryReplayGuard
from mesh.v1 import (
    registration_pb2,
    registration_pb2_grpc,
    tokens_pb2,
    tokens_pb2_grpc,
    verify_pb2,
    verify_pb2_grpc,
)
from mesh.verifier import PeerVerifier

SECONDS = float(os.environ.get("BENCH_VERIFY_SECONDS", "3"))
SENDERS = 4
BATCH = 1000
IN_FLIGHT = 2
AUDIENCE = "spiffe://bench.mesh/gateway/bench"


def _raw_count(seconds: float) -> tuple[int, float]:
    """Verifies done in ``seconds`` of wall time, and the CPU seconds this thread spent."""
    key = IdentityKey.generate()
    message = b"m" * 200
    signature = key.sign(message)
    public = key.public_key
    n = 0
    cpu = time.thread_time()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(200):
            verify_strict(public, message, signature)
        n += 200
    return n, time.thread_time() - cpu


def _raw_worker(commands: Any, out: Any) -> None:
    """One raw-verify process: on each ``seconds`` command, verify that long and report."""
    while True:
        seconds = commands.get()
        if seconds is None:
            return
        out.put(_raw_count(seconds))


class RawPair:
    """Two processes verifying (PyNaCl, strict) in rounds the caller starts.

    Kept alive for the whole run so their rounds can alternate with the gRPC
    rounds: both figures then see the same load on the machine.
    """

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._commands = [ctx.Queue() for _ in range(2)]
        self._out = ctx.Queue()
        self._procs = [
            ctx.Process(target=_raw_worker, args=(commands, self._out), daemon=True)
            for commands in self._commands
        ]
        for p in self._procs:
            p.start()
        self.reset()
        self.round(0.2)  # both have imported and warmed up
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.cpu_rates: list[float] = []  # each process's verifies per CPU second, per round
        self.wall = 0.0

    def round(self, seconds: float) -> None:
        start = time.perf_counter()
        for commands in self._commands:
            commands.put(seconds)
        results = [self._out.get(timeout=seconds + 60) for _ in self._procs]
        self.wall += time.perf_counter() - start
        self.count += sum(n for n, _ in results)
        self.cpu_rates += [n / cpu for n, cpu in results]

    def per_cpu(self) -> float:
        """Two cores' worth: the sum of each process's verifies per CPU second."""
        return 2 * sum(self.cpu_rates) / len(self.cpu_rates)

    def per_wall(self) -> float:
        """Verifies per wall second of both processes together (what the machine gave them)."""
        return self.count / self.wall

    def close(self) -> None:
        for commands in self._commands:
            commands.put(None)
        for p in self._procs:
            p.join(10)
            if p.is_alive():
                p.kill()


def _register(port: int, data_dir: Path, n: int) -> list[tuple[IdentityKey, str]]:
    bundle = (data_dir / "bundle.pem").read_bytes()
    op_cert = (data_dir / "operator" / "operator.pem").read_bytes()
    op_key = (data_dir / "operator" / "operator.key").read_bytes()
    public = grpc.secure_channel(
        f"127.0.0.1:{port}", grpc.ssl_channel_credentials(root_certificates=bundle)
    )
    operator = grpc.secure_channel(
        f"127.0.0.1:{port + 1}",
        grpc.ssl_channel_credentials(bundle, private_key=op_key, certificate_chain=op_cert),
    )
    tokens = tokens_pb2_grpc.JoinTokenServiceStub(operator)
    registration = registration_pb2_grpc.RegistrationServiceStub(public)
    out = []
    for i in range(n):
        identity = IdentityKey.generate()
        history = KeyHistory.incept(identity, datetime.now(UTC))
        token = tokens.CreateJoinToken(
            tokens_pb2.CreateJoinTokenRequest(agent_name=f"bench/sender-{i}")
        ).token
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
            .public_bytes(serialization.Encoding.DER)
        )
        challenge = registration.GetChallenge(registration_pb2.GetChallengeRequest())
        response = registration.Register(
            registration_pb2.RegisterRequest(
                join_token=token, public_key=identity.public_key, challenge=challenge.nonce,
                proof=sign_proof(identity, challenge.trust_domain, challenge.nonce, csr),
                csr=csr, key_history=history.to_json(),
            )
        )
        out.append((identity, response.did))
    public.close()
    operator.close()
    return out


def _envelopes(senders: list[tuple[IdentityKey, str]], n: int) -> list[Envelope]:
    return [
        sign_message(key, did, "application/json", b'{"op":"ping","n":%d}' % i, AUDIENCE,
                     ttl=timedelta(minutes=30))
        for i in range(n)
        for key, did in (senders[i % len(senders)],)
    ]


ROUND = 0.25  # seconds per measurement round; rounds of the figures alternate
BATCH_ROUND = 1.0  # seconds per VerifyBatch round (1000-message calls: several per round)
RAW_ROUND = 0.5  # seconds per two-process raw round, before and after each VerifyBatch round


def _interleaved(
    runs: dict[str, Any], seconds: float, wall: frozenset[str] = frozenset()
) -> dict[str, float]:
    """Rates of several loops measured in alternating short rounds.

    The machine's load moves during a run; alternating rounds exposes every
    figure to the same load, so their ratios hold even when the rates swing.
    One-thread figures count this thread's CPU time (per core, whatever else
    runs on the machine); the names in ``wall`` (several threads) count wall time.
    Each ``runs[name](deadline)`` works until ``deadline`` and returns its count.
    """
    counts = dict.fromkeys(runs, 0)
    spent = dict.fromkeys(runs, 0.0)
    end = time.perf_counter() + seconds * len(runs)
    while time.perf_counter() < end:
        for name, run in runs.items():
            clock = time.perf_counter if name in wall else time.thread_time
            start, cpu = time.perf_counter(), clock()
            counts[name] += run(start + ROUND)
            spent[name] += clock() - cpu
    return {name: counts[name] / spent[name] for name in runs}


def _looping(fn: Any, items: list[Any]) -> Any:
    """A run over fresh items (each used once: nonces must not repeat)."""
    feed = iter(items)

    def run(deadline: float) -> int:
        n = 0
        while True:
            for _ in range(100):
                fn(next(feed))
            n += 100
            if time.perf_counter() >= deadline:
                return n

    return run


def _raw_run() -> Any:
    key = IdentityKey.generate()
    message = b"m" * 200
    signature = key.sign(message)
    public = key.public_key

    def run(deadline: float) -> int:
        n = 0
        while True:
            for _ in range(100):
                verify_strict(public, message, signature)
            n += 100
            if time.perf_counter() >= deadline:
                return n

    return run


def peer_figures(
    port: int, data_dir: Path, senders: list[tuple[IdentityKey, str]]
) -> dict[str, float]:
    tls = TLSConfig.from_files(
        data_dir / "bundle.pem",
        data_dir / "operator" / "operator.pem",
        data_dir / "operator" / "operator.key",
    )
    keys = PeerVerifier.connect(
        f"127.0.0.1:{port}", tls=tls, mtls_registry=f"127.0.0.1:{port + 1}"
    ).start()
    try:
        if not keys.wait_synced(30):
            raise SystemExit("the peer verifier did not sync with the registry's Watch stream")
        keys.prefetch(did for _, did in senders)
        count = int(60_000 * SECONDS / 3)
        envelopes = _envelopes(senders, count)
        verifier = Verifier(keys, audience=AUDIENCE, replay=MemoryReplayGuard(2_000_000))
        for envelope in envelopes[:200]:  # warm-up (and check they verify)
            verifier.verify(envelope)

        def hot(envelope: Envelope) -> None:
            public = keys.resolve(envelope.sender, envelope.kid, envelope.issued)
            if not verify_strict(public, envelope.signed_bytes, envelope.signature):
                raise SystemExit("bench envelope did not verify")

        fresh = _envelopes(senders, 2 * count)
        verifier2 = Verifier(keys, audience=AUDIENCE, replay=MemoryReplayGuard(4_000_000))
        feeds = [_looping(verifier2.verify, fresh[0::2]), _looping(verifier2.verify, fresh[1::2])]

        def two_threads(deadline: float) -> int:
            counts: list[int] = []
            threads = [
                threading.Thread(target=lambda f=f: counts.append(f(deadline))) for f in feeds
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return sum(counts)

        rates = _interleaved(
            {
                "raw_verify_1core_per_s": _raw_run(),
                "peer_verifier_warm_per_s": _looping(verifier.verify, envelopes[200:]),
                "peer_resolve_and_verify_per_s": _looping(hot, envelopes),
                "peer_verifier_2threads_per_s": two_threads,
            },
            SECONDS,
            wall=frozenset({"peer_verifier_2threads_per_s"}),
        )
        return rates
    finally:
        keys.stop()


# -- thread pool or process pool for a batch (the registry's choice, measured) ------------

_WORKER: dict[str, Any] = {}


def _local_verifier(port: int, data_dir: Path, dids: list[str]) -> Verifier:
    """The registry's verification path (same rules, same code) outside gRPC."""
    from registry.services.verify import _NotChecked

    tls = TLSConfig.from_files(
        data_dir / "bundle.pem",
        data_dir / "operator" / "operator.pem",
        data_dir / "operator" / "operator.key",
    )
    keys = PeerVerifier.connect(
        f"127.0.0.1:{port}", tls=tls, mtls_registry=f"127.0.0.1:{port + 1}", watch=False,
        max_staleness=timedelta(hours=1),
    )
    keys.prefetch(dids)
    return Verifier(keys, audience=AUDIENCE, replay=_NotChecked())


def _pool_init(port: int, data_dir: str, dids: list[str]) -> None:
    _WORKER["verifier"] = _local_verifier(port, Path(data_dir), dids)


def _pool_verify(chunk: bytes) -> bytes:
    from registry.services.verify import _batch_part

    request = verify_pb2.VerifyBatchRequest.FromString(chunk)
    return _batch_part(_WORKER["verifier"], request.messages, 0, len(request.messages))


def pool_figures(
    port: int, data_dir: Path, senders: list[tuple[IdentityKey, str]]
) -> dict[str, float]:
    """One 1000-message batch split in two and verified by 2 threads, or by 2 processes."""
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    from registry.services.verify import _batch_part

    dids = [did for _, did in senders]
    batch = [
        verify_pb2.SignedMessage(envelope_binary=e.to_bytes()) for e in _envelopes(senders, BATCH)
    ]
    halves = [
        verify_pb2.VerifyBatchRequest(messages=batch[: BATCH // 2]),
        verify_pb2.VerifyBatchRequest(messages=batch[BATCH // 2 :]),
    ]
    encoded = [h.SerializeToString() for h in halves]
    verifier = _local_verifier(port, data_dir, dids)
    threads = ThreadPoolExecutor(2)
    processes = ProcessPoolExecutor(
        2,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_pool_init,
        initargs=(port, str(data_dir), dids),
    )
    try:
        list(processes.map(_pool_verify, encoded))  # start and warm both workers

        def with_threads(deadline: float) -> int:
            n = 0
            while time.perf_counter() < deadline:
                parts = threads.map(
                    lambda h: _batch_part(verifier, h.messages, 0, len(h.messages)), halves
                )
                merged = b"".join(parts)  # as the registry joins them
                n += len(verify_pb2.VerifyBatchResponse.FromString(merged).verdicts)
            return n

        def with_processes(deadline: float) -> int:
            n = 0
            while time.perf_counter() < deadline:
                merged = b"".join(processes.map(_pool_verify, encoded))
                n += len(verify_pb2.VerifyBatchResponse.FromString(merged).verdicts)
            return n

        return _interleaved(
            {
                "batch_local_2threads_msgs_per_s": with_threads,
                "batch_local_2processes_msgs_per_s": with_processes,
            },
            SECONDS,
            wall=frozenset(
                {"batch_local_2threads_msgs_per_s", "batch_local_2processes_msgs_per_s"}
            ),
        )
    finally:
        threads.shutdown()
        processes.shutdown()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _batch_and_raw_rounds(
    port: int, data_dir: Path, request: Any, seconds: float, pid: int, raw: RawPair
) -> dict[str, float]:
    """VerifyBatch over gRPC (IN_FLIGHT calls at a time) in rounds alternating with raw rounds.

    Counts the registry's CPU (from /proc) and this client's CPU over the gRPC rounds.
    """
    bundle = (data_dir / "bundle.pem").read_bytes()
    op_cert = (data_dir / "operator" / "operator.pem").read_bytes()
    op_key = (data_dir / "operator" / "operator.key").read_bytes()
    channel = grpc.aio.secure_channel(
        f"127.0.0.1:{port + 1}",
        grpc.ssl_channel_credentials(bundle, private_key=op_key, certificate_chain=op_cert),
        options=[("grpc.max_receive_message_length", 8 * 1024 * 1024)],
    )
    stub = verify_pb2_grpc.VerifyServiceStub(channel)
    first = await stub.VerifyBatch(request)
    if not all(v.valid for v in first.verdicts):
        bad = next(v for v in first.verdicts if not v.valid)
        raise SystemExit(f"bench batch did not verify: {bad.reason_name}: {bad.message}")

    async def caller(stop_at: float) -> int:
        n = 0
        while time.perf_counter() < stop_at:
            response = await stub.VerifyBatch(request)
            n += len(response.verdicts)
        return n

    loop = asyncio.get_running_loop()
    done, elapsed, server_cpu, client_cpu = 0, 0.0, 0.0, 0.0
    rounds = max(2, round(seconds / BATCH_ROUND))
    for _ in range(rounds):
        await loop.run_in_executor(None, raw.round, RAW_ROUND)
        stop_at = time.perf_counter() + BATCH_ROUND
        start, cpu, mine = time.perf_counter(), _cpu_seconds(pid), time.process_time()
        done += sum(await asyncio.gather(*(caller(stop_at) for _ in range(IN_FLIGHT))))
        elapsed += time.perf_counter() - start
        server_cpu += _cpu_seconds(pid) - cpu
        client_cpu += time.process_time() - mine
    await loop.run_in_executor(None, raw.round, RAW_ROUND)
    await channel.close()
    return {
        "verify_batch_msgs_per_s": done / elapsed,
        "verify_batch_msgs_per_server_cpu_s": done / max(server_cpu, 1e-9),
        "verify_batch_server_cores_busy": server_cpu / elapsed,
        "verify_batch_client_cpu_us_per_msg": 1e6 * client_cpu / done,
        "raw_verify_2proc_per_s": raw.per_cpu(),
        "raw_verify_2proc_wall_per_s": raw.per_wall(),
    }


def main() -> None:
    figures: dict[str, Any] = {}
    raw = RawPair()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(tmp) / "data"
            proc, port = _start_server(data_dir, "")
            try:
                senders = _register(port, data_dir, SENDERS)
                figures.update(peer_figures(port, data_dir, senders))
                figures.update(pool_figures(port, data_dir, senders))
                batch = verify_pb2.VerifyBatchRequest(
                    messages=[
                        verify_pb2.SignedMessage(envelope_binary=e.to_bytes())
                        for e in _envelopes(senders, BATCH)
                    ],
                    audiences=[AUDIENCE],
                )
                figures.update(
                    asyncio.run(
                        _batch_and_raw_rounds(port, data_dir, batch, SECONDS, proc.pid, raw)
                    )
                )
            finally:
                _stop(proc)
    finally:
        raw.close()
    out = {
        k: round(v, 2 if k.endswith(("_busy", "_per_msg")) else 1) for k, v in figures.items()
    }
    out["verify_batch_size"] = BATCH
    out["warm_verifier_to_raw_1core_ratio"] = round(
        figures["peer_verifier_warm_per_s"] / figures["raw_verify_1core_per_s"], 3
    )
    out["resolve_and_verify_to_raw_1core_ratio"] = round(
        figures["peer_resolve_and_verify_per_s"] / figures["raw_verify_1core_per_s"], 3
    )
    out["verifier_2threads_to_1thread_ratio"] = round(
        figures["peer_verifier_2threads_per_s"] / figures["peer_verifier_warm_per_s"], 3
    )
    out["verify_batch_server_cpu_to_raw_1core_ratio"] = round(
        figures["verify_batch_msgs_per_server_cpu_s"] / figures["raw_verify_1core_per_s"], 3
    )
    out["batch_threads_to_processes_ratio"] = round(
        figures["batch_local_2threads_msgs_per_s"]
        / figures["batch_local_2processes_msgs_per_s"],
        3,
    )
    out["verify_batch_to_raw_2proc_ratio"] = round(
        figures["verify_batch_msgs_per_s"] / figures["raw_verify_2proc_per_s"], 3
    )
    out["verify_batch_to_raw_2proc_wall_ratio"] = round(
        figures["verify_batch_msgs_per_s"] / figures["raw_verify_2proc_wall_per_s"], 3
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
