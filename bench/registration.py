"""Registrations per second against a real registry (`mesh serve`), 64 concurrent clients.

The registry runs as its own processes, one serving process per core
(``mesh serve --workers``; ``BENCH_WORKERS`` overrides the count), on SQLite in
a temp data dir, then on a fresh PostgreSQL database when one is reachable on
127.0.0.1:5432. This process is the client (grpc.aio, one connection per
client, as agents have). One registration is
GetChallenge + Register, with the identity key, CSR and join token made
beforehand. An empty unary RPC (health Check) is measured against the same
server in the same run, and the ratio printed beside it.

The same registrations are also made in this process without gRPC, by calling
the registration service directly (SQLite, 64 concurrent calls on one event
loop, the store's group commit as in the server): ``*_in_process_sqlite``, the
ceiling of the registry's own work (CPU of the whole process per registration).

The Python client above shares the cores with the registry and spends about as
much CPU per registration as the registry does. The same registrations are
therefore also made by a native load generator (``bench/loadgen``, C++ gRPC and
libsodium, built by ``bench/loadgen/build.sh``, which installs its Debian
packages when missing): ``*_native_client``, with one connection per concurrent
client as real agents have, the server's CPU per registration and the load
generator's own. Its join tokens are minted through the operator channel as
above and handed over with the CSRs in a 0600 file; it makes its own Ed25519
keys. When it cannot be built, ``native_client_skipped`` says why.

Server CPU is that of the ``mesh serve`` process and all its descendants (a
registry of several serving processes). Prints one flat JSON object.
``BENCH_REGISTRATIONS`` (default 4000) sets the count; ``BENCH_DATABASES``
(default ``sqlite,sqlite_native,in_process,postgres,postgres_native``) picks the
parts; ``BENCH_SERVE_ARGS`` is appended to the ``mesh serve`` command line;
``BENCH_NATIVE_CHANNELS`` (default 64, one per client)
sets the native client's connections.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
from _trust_server import free_port_pair
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh.keys import IdentityKey
from mesh.registration import sign_proof
from mesh.v1 import registration_pb2, registration_pb2_grpc, tokens_pb2, tokens_pb2_grpc

CLIENTS = 64
REGISTRATIONS = int(os.environ.get("BENCH_REGISTRATIONS", "4000"))
UNARY_SECONDS = 3.0
TRUST_DOMAIN = "bench.mesh"
PARTS = ("sqlite", "sqlite_native", "in_process", "postgres", "postgres_native")
# One serving process per core (`mesh serve --workers`): a single one serves on one core.
WORKERS = int(os.environ.get("BENCH_WORKERS", str(os.cpu_count() or 1)))
SERVE_ARGS = ["--workers", str(WORKERS), *shlex.split(os.environ.get("BENCH_SERVE_ARGS", ""))]
LOADGEN_DIR = Path(__file__).resolve().parent / "loadgen"
NATIVE_CHANNELS = int(os.environ.get("BENCH_NATIVE_CHANNELS", str(CLIENTS)))
# A bound on one native run (its RPC deadlines are 60 s each): it never hangs the bench.
LOADGEN_TIMEOUT = 900.0


def _start_server(data_dir: Path, database_url: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port_pair()
    mesh = Path(sys.executable).with_name("mesh")
    command = [
        str(mesh), "serve", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}",
        "--trust-domain", TRUST_DOMAIN, "--log-format", "json",
    ]
    if database_url:
        command += ["--database-url", database_url]
    command += SERVE_ARGS
    env = {**os.environ, "MESH_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            errors = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"mesh serve exited: {errors}")
        if (data_dir / "operator" / "operator.pem").exists():
            try:
                with socket.create_connection(("127.0.0.1", port + 1), timeout=0.2):
                    return proc, port
            except OSError:
                pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("mesh serve did not start within 60 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _csrs(n: int) -> list[bytes]:
    """DER CSRs, each for a fresh P-256 key, as agents send them."""
    return [
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
        for _ in range(n)
    ]


def _prepare(n: int) -> list[tuple[IdentityKey, bytes]]:
    return [(IdentityKey.generate(), csr) for csr in _csrs(n)]


Material = list[tuple[IdentityKey, bytes]]


def _process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants (Linux /proc)."""
    pids, at = [pid], 0
    while at < len(pids):
        for children in Path(f"/proc/{pids[at]}/task").glob("*/children"):
            try:
                pids += [int(child) for child in children.read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                pass  # that thread or process ended meanwhile
        at += 1
    return pids


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its descendants (Linux /proc).

    Load-independent, unlike rates. A registry made of several serving processes
    spends its CPU in children: live ones are summed, and those that ended count
    in their parent's cutime/cstime once it has reaped them.
    """
    ticks = 0
    for member in _process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        ticks += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _public_channel(port: int, bundle: bytes) -> grpc.aio.Channel:
    """A connection of its own to the registry's TLS port (as each agent has)."""
    return grpc.aio.secure_channel(
        f"127.0.0.1:{port}", grpc.ssl_channel_credentials(root_certificates=bundle),
        options=[("grpc.use_local_subchannel_pool", 1)],
    )


def _channels(port: int, data_dir: Path) -> tuple[grpc.aio.Channel, grpc.aio.Channel]:
    """The registry's public TLS channel and the operator's mTLS channel (port + 1)."""
    bundle = (data_dir / "bundle.pem").read_bytes()
    op_cert = (data_dir / "operator" / "operator.pem").read_bytes()
    op_key = (data_dir / "operator" / "operator.key").read_bytes()
    public = _public_channel(port, bundle)
    operator = grpc.aio.secure_channel(
        f"127.0.0.1:{port + 1}",
        grpc.ssl_channel_credentials(bundle, private_key=op_key, certificate_chain=op_cert),
    )
    return public, operator


async def _join_tokens(operator: grpc.aio.Channel, n: int) -> list[str]:
    """``n`` one-time join tokens minted by the operator, 64 requests at a time."""
    tokens_stub = tokens_pb2_grpc.JoinTokenServiceStub(operator)
    sem = asyncio.Semaphore(CLIENTS)

    async def token() -> str:
        async with sem:
            r = await tokens_stub.CreateJoinToken(
                tokens_pb2.CreateJoinTokenRequest(agent_name="bench/agent", ttl_seconds=3600)
            )
            return str(r.token)

    return list(await asyncio.gather(*(token() for _ in range(n))))


async def _run(
    port: int, data_dir: Path, material: Material, pid: int
) -> dict[str, float]:
    public, operator = _channels(port, data_dir)
    # One connection per client, as agents have: spread over the serving processes.
    bundle = (data_dir / "bundle.pem").read_bytes()
    connections = [_public_channel(port, bundle) for _ in range(CLIENTS)]
    health = [health_pb2_grpc.HealthStub(c) for c in connections]

    tokens = await _join_tokens(operator, len(material))

    async def register(
        registration: Any, identity: IdentityKey, csr: bytes, join_token: str
    ) -> None:
        challenge = await registration.GetChallenge(registration_pb2.GetChallengeRequest())
        proof = sign_proof(identity, challenge.trust_domain, challenge.nonce, csr)
        response = await registration.Register(
            registration_pb2.RegisterRequest(
                join_token=join_token, public_key=identity.public_key,
                challenge=challenge.nonce, proof=proof, csr=csr,
            )
        )
        assert response.created

    queue: asyncio.Queue[tuple[IdentityKey, bytes, str]] = asyncio.Queue()
    for (identity, csr), tok in zip(material, tokens, strict=True):
        queue.put_nowait((identity, csr, tok))

    async def worker(connection: grpc.aio.Channel) -> None:
        registration = registration_pb2_grpc.RegistrationServiceStub(connection)
        while True:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await register(registration, *item)

    # Connect every client and warm up the server's code paths.
    await asyncio.gather(*(h.Check(health_pb2.HealthCheckRequest()) for h in health))
    cpu, client_cpu = _cpu_seconds(pid), time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in connections))
    elapsed = time.perf_counter() - start
    registration_cpu = _cpu_seconds(pid) - cpu
    client_cpu = time.process_time() - client_cpu
    registrations_per_s = len(material) / elapsed

    count = 0
    stop_at = time.perf_counter() + UNARY_SECONDS

    async def pinger(stub: Any) -> None:
        nonlocal count
        request = health_pb2.HealthCheckRequest()
        while time.perf_counter() < stop_at:
            await stub.Check(request)
            count += 1

    cpu = _cpu_seconds(pid)
    start = time.perf_counter()
    await asyncio.gather(*(pinger(stub) for stub in health))
    unary_per_s = count / (time.perf_counter() - start)
    unary_cpu = _cpu_seconds(pid) - cpu
    for channel in (public, operator, *connections):
        await channel.close()
    return {
        "registrations_per_s": registrations_per_s,
        "unary_rpc_per_s": unary_per_s,
        "server_cpu_ms_per_registration": 1000 * registration_cpu / len(material),
        "client_cpu_ms_per_registration": 1000 * client_cpu / len(material),
        "server_cpu_ms_per_unary_rpc": 1000 * unary_cpu / max(count, 1),
    }


def _measure(label: str, database_url: str, material: Material) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        proc, port = _start_server(data_dir, database_url)
        try:
            result = asyncio.run(_run(port, data_dir, material, proc.pid))
        finally:
            _stop(proc)
    return {
        f"registrations_per_s_{label}": round(result["registrations_per_s"], 1),
        f"unary_rpc_per_s_{label}": round(result["unary_rpc_per_s"], 1),
        f"registration_to_unary_ratio_{label}": round(
            result["registrations_per_s"] / result["unary_rpc_per_s"], 3
        ),
        f"server_cpu_ms_per_registration_{label}": round(
            result["server_cpu_ms_per_registration"], 3
        ),
        f"server_cpu_ms_per_unary_rpc_{label}": round(result["server_cpu_ms_per_unary_rpc"], 3),
        f"client_cpu_ms_per_registration_{label}": round(
            result["client_cpu_ms_per_registration"], 3
        ),
    }


def _build_loadgen() -> tuple[Path | None, str]:
    """The native load generator (built, and its packages installed, when needed), or why not.

    Skipped only where its packages cannot be installed (build.sh exit 3).
    """
    try:
        done = subprocess.run(
            ["bash", str(LOADGEN_DIR / "build.sh")], capture_output=True, text=True,
            timeout=LOADGEN_TIMEOUT, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"bench/loadgen/build.sh did not run: {exc}"
    last = (done.stderr.strip().splitlines()[-1:] or ["no output"])[0][:300]
    if done.returncode == 3:  # its packages are missing and cannot be installed here
        return None, f"bench/loadgen/build.sh: {last}"
    if done.returncode != 0:  # a broken build is a failure, never a silent skip
        print(done.stderr, file=sys.stderr, end="")
        raise SystemExit(f"bench/loadgen/build.sh exit {done.returncode}: {last}")
    binary = Path(done.stdout.strip().splitlines()[-1])
    return binary, ""


def _write_registrations(path: Path, tokens: list[str], csrs: list[bytes]) -> None:
    """Per registration, its join token and CSR, each u64-length-prefixed (0600: tokens)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        for token, csr in zip(tokens, csrs, strict=True):
            for field in (token.encode(), csr):
                out.write(len(field).to_bytes(8, "big") + field)


def _run_loadgen(
    loadgen: Path, port: int, data_dir: Path, registrations: Path, pid: int
) -> tuple[dict[str, Any], float]:
    """The load generator's report and the server's CPU seconds over its timed part.

    It connects every channel, says it is ready, and starts on our word, so the
    server's CPU is sampled around the registrations alone.
    """
    command = [
        str(loadgen), "--target", f"127.0.0.1:{port}", "--bundle", str(data_dir / "bundle.pem"),
        "--input", str(registrations), "--concurrency", str(CLIENTS),
        "--channels", str(NATIVE_CHANNELS), "--sync-stdin",
    ]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    watchdog = threading.Timer(LOADGEN_TIMEOUT, proc.kill)
    watchdog.start()
    try:
        assert proc.stdin is not None and proc.stdout is not None
        ready = proc.stdout.readline()
        if json.loads(ready or "{}").get("ready") is not True:
            raise SystemExit(f"loadgen did not start: {ready!r}, exit {proc.wait()}")
        cpu = _cpu_seconds(pid)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        report = proc.stdout.readline()
        server_cpu = _cpu_seconds(pid) - cpu
        if proc.wait() != 0 or not report:
            raise SystemExit(f"loadgen failed: exit {proc.returncode}")
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return json.loads(report), server_cpu


def _measure_native(
    label: str, database_url: str, csrs: list[bytes], loadgen: Path
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        proc, port = _start_server(data_dir, database_url)
        try:

            async def mint() -> list[str]:
                public, operator = _channels(port, data_dir)
                try:
                    return await _join_tokens(operator, len(csrs))
                finally:
                    await public.close()
                    await operator.close()

            registrations = Path(tmp) / "registrations"
            _write_registrations(registrations, asyncio.run(mint()), csrs)
            report, server_cpu = _run_loadgen(loadgen, port, data_dir, registrations, proc.pid)
        finally:
            _stop(proc)
    succeeded = int(report["succeeded"])
    failures: dict[str, int] = report["failures"]
    label = f"{label}_native_client"
    out: dict[str, Any] = {
        f"registrations_per_s_{label}": round(succeeded / report["elapsed_s"], 1),
        f"server_cpu_ms_per_registration_{label}": round(1000 * server_cpu / max(succeeded, 1), 3),
        f"loadgen_cpu_ms_per_registration_{label}": round(
            1000 * report["cpu_s"] / max(succeeded, 1), 3
        ),
        f"failed_registrations_{label}": sum(failures.values()),
    }
    if failures:
        out[f"failures_by_code_{label}"] = ",".join(f"{k}={v}" for k, v in failures.items())
    return out


def _postgres() -> tuple[str, str] | None:
    try:
        import psycopg

        name = f"trustmesh_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True,
            connect_timeout=3,
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name, f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    except Exception:
        return None


def _drop(name: str) -> None:
    import psycopg

    with psycopg.connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _in_process(data_dir: Path, material: Material) -> dict[str, float]:
    from concurrent.futures import ThreadPoolExecutor
    from datetime import UTC, datetime, timedelta

    from registry.ca import CertificateAuthority
    from registry.config import Config
    from registry.metrics import Metrics
    from registry.services._runtime import Runtime
    from registry.services.registration import RegistrationService
    from registry.store import hash_token, open_store

    store = open_store(None, data_dir)
    store.upgrade()
    executor = ThreadPoolExecutor(8)
    try:
        runtime = Runtime(
            config=Config(trust_domain=TRUST_DOMAIN, data_dir=data_dir),
            ca=CertificateAuthority.open(data_dir, TRUST_DOMAIN),
            store=store,
            metrics=Metrics(),
            executor=executor,
        )
        service = RegistrationService(runtime)
        tokens = [uuid.uuid4().hex for _ in material]
        with store.transaction() as tx:
            for token in tokens:
                tx.tokens.create(
                    token_hash=hash_token(token), agent_name="bench/agent", created_by="bench",
                    expires_at=datetime.now(UTC) + timedelta(hours=1),
                )
        requests = []
        for (identity, csr), token in zip(material, tokens, strict=True):
            nonce, _ = runtime.challenges.mint()
            requests.append(registration_pb2.RegisterRequest(
                join_token=token, public_key=identity.public_key, challenge=nonce,
                proof=sign_proof(identity, TRUST_DOMAIN, nonce, csr), csr=csr,
            ))
        pending = iter(requests)

        async def caller() -> None:
            for request in pending:
                response = await service.Register(request, None)
                assert response.created

        cpu, start = time.process_time(), time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(CLIENTS)))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        store.close()
        executor.shutdown()
    return {
        "registrations_per_s_in_process_sqlite": round(len(material) / elapsed, 1),
        "cpu_ms_per_registration_in_process_sqlite": round(1000 * cpu / len(material), 3),
    }


def main() -> None:
    databases = os.environ.get("BENCH_DATABASES", ",".join(PARTS)).split(",")
    unknown = set(databases) - set(PARTS)
    if unknown:
        raise SystemExit(f"BENCH_DATABASES: unknown part(s) {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {
        "clients": CLIENTS, "registrations": REGISTRATIONS, "serving_processes": WORKERS,
    }
    loadgen: Path | None = None
    if {"sqlite_native", "postgres_native"} & set(databases):
        loadgen, reason = _build_loadgen()
        if loadgen is None:
            out["native_client_skipped"] = reason
        else:
            out["native_client_channels"] = NATIVE_CHANNELS
    if "sqlite" in databases:
        out.update(_measure("sqlite", "", _prepare(REGISTRATIONS)))
    if "sqlite_native" in databases and loadgen is not None:
        out.update(_measure_native("sqlite", "", _csrs(REGISTRATIONS), loadgen))
    if "in_process" in databases:
        with tempfile.TemporaryDirectory() as tmp:
            out.update(asyncio.run(_in_process(Path(tmp), _prepare(REGISTRATIONS))))
    if "postgres" in databases:
        pg = _postgres()
        if pg is not None:
            try:
                out.update(_measure("postgres", pg[1], _prepare(REGISTRATIONS)))
            finally:
                _drop(pg[0])
    if "postgres_native" in databases and loadgen is not None:
        pg = _postgres()
        if pg is not None:
            try:
                out.update(_measure_native("postgres", pg[1], _csrs(REGISTRATIONS), loadgen))
            finally:
                _drop(pg[0])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
