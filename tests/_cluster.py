"""N real ``mesh serve`` processes on loopback sharing one PostgreSQL database.

Used by the replica tests and bench/replicas.py. Each replica has its own data
directory and ports; they share the database and the replica key, so the first
one to start creates the CA (and the others load it from the database).
Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from registry.replica import LEADER_APPLICATION, LEADER_KEY

MESH = str(Path(sys.executable).with_name("mesh"))
TRUST_DOMAIN = "cluster.mesh"
#: The PostgreSQL the cluster runs on (the system cluster unless overridden, e.g. to
#: rehearse the disruptive outage test on a private cluster).
PG_PORT = int(os.environ.get("MESH_TEST_PG_PORT", "5432"))
PG_CLUSTER = os.environ.get("MESH_TEST_PG_CLUSTER", "main")
ADMIN_DSN = f"host=127.0.0.1 port={PG_PORT} user=postgres dbname=postgres"
REPLICA_KEY = "cluster-test-replica-key-" + "x" * 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_pair() -> int:
    """A free port whose successor is free too (a registry's TLS and mTLS listeners)."""
    while True:
        port = free_port()
        if port >= 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


@dataclass
class Replica:
    index: int
    data_dir: Path
    database_url: str
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    mtls_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def mtls_address(self) -> str:
        return f"127.0.0.1:{self.mtls_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"replica-{self.index}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        command = [
            MESH, "serve",
            "--data-dir", str(self.data_dir),
            "--database-url", self.database_url,
            "--trust-domain", TRUST_DOMAIN,
            "--listen", self.address,
            "--mtls-listen", self.mtls_address,
            "--log-format", "json",
        ]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        log.close()

    def health(self, bundle_pem: bytes, timeout: float = 2.0) -> int | None:
        """The overall health status, or None when the replica does not answer."""
        creds = grpc.ssl_channel_credentials(root_certificates=bundle_pem)
        with grpc.secure_channel(self.address, creds) as ch:
            try:
                response = health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=timeout
                )
            except grpc.RpcError:
                return None
        return int(response.status)

    def wait_ready(self, timeout: float = 60.0) -> None:
        bundle = self.data_dir / "bundle.pem"

        def ready() -> bool:
            if not self.alive:
                raise RuntimeError(f"replica {self.index} exited:\n{self.tail()}")
            if not bundle.exists():
                return False
            return self.health(bundle.read_bytes(), 1.0) == health_pb2.HealthCheckResponse.SERVING

        if not wait_until(ready, timeout, 0.1):
            raise RuntimeError(f"replica {self.index} not ready in {timeout}s:\n{self.tail()}")

    def kill(self) -> None:
        """kill -9, and reap it."""
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait (bounded); the exit status."""
        assert self.proc is not None
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


class Cluster:
    """Replicas over one fresh PostgreSQL database (dropped by :meth:`close`)."""

    def __init__(
        self, root: Path, size: int, *, extra_env: dict[str, str] | None = None
    ) -> None:
        self.root = root
        self.database = f"trustmesh_cluster_{uuid.uuid4().hex[:12]}"
        self.database_url = f"postgresql+psycopg://postgres@127.0.0.1:{PG_PORT}/{self.database}"
        env = dict(os.environ)
        env.update({
            "MESH_REPLICA_KEY": REPLICA_KEY,
            "MESH_LOG_LEVEL": "info",
            "MESH_WORKER_THREADS": "8",
            "MESH_TRUST_RECOMPUTE_INTERVAL_SECONDS": "1",
            "MESH_GRACE_SECONDS": "5",
            # Good neighbours on a shared PostgreSQL (max_connections 100).
            "MESH_DATABASE_POOL_SIZE": "8",
            "MESH_DATABASE_MAX_OVERFLOW": "8",
        })
        env.update(extra_env or {})
        self.env = env
        self.replicas = [
            Replica(i + 1, root / f"r{i + 1}" / "data", self.database_url, env)
            for i in range(size)
        ]

    # -- lifecycle ---------------------------------------------------------------------

    def create_database(self) -> None:
        import psycopg

        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')

    def start(self, timeout: float = 90.0, *, create_database: bool = True) -> Cluster:
        """Start every replica (creating the database first unless told it exists)."""
        if create_database:
            self.create_database()
        for replica in self.replicas:
            replica.data_dir.parent.mkdir(parents=True, exist_ok=True)
        # Replica 1 first: it creates the CA and becomes the leader (tests rely on
        # knowing who leads at the start); the others start together.
        self.first.start()
        self.first.wait_ready(timeout)
        for replica in self.replicas[1:]:
            replica.start()
        for replica in self.replicas[1:]:
            replica.wait_ready(timeout)
        return self

    def close(self) -> None:
        import psycopg

        for replica in self.replicas:
            with contextlib.suppress(Exception):
                if replica.alive:
                    replica.terminate(15)
            with contextlib.suppress(Exception):
                replica.kill()
        with contextlib.suppress(Exception), psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- facts -------------------------------------------------------------------------

    @property
    def first(self) -> Replica:
        return self.replicas[0]

    @property
    def bundle_pem(self) -> bytes:
        return (self.first.data_dir / "bundle.pem").read_bytes()

    @property
    def addresses(self) -> list[str]:
        return [r.address for r in self.replicas]

    @property
    def mtls_addresses(self) -> list[str]:
        return [r.mtls_address for r in self.replicas]

    def replica_by_pid(self, pid: int) -> Replica | None:
        return next((r for r in self.replicas if r.alive and r.pid == pid), None)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        dsn = f"host=127.0.0.1 port={PG_PORT} user=postgres dbname={self.database}"
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            return list(conn.execute(sql, params).fetchall())  # type: ignore[arg-type]

    def leader_pids(self) -> list[int]:
        """OS pids of the replicas holding the leader lock (at most one, by construction)."""
        classid, objid = (LEADER_KEY >> 32) & 0xFFFFFFFF, LEADER_KEY & 0xFFFFFFFF
        rows = self.query(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s "
            "AND l.objsubid = 1 AND a.datname = current_database()",
            (classid, objid),
        )
        pids = []
        for (name,) in rows:
            if name and name.startswith(LEADER_APPLICATION):
                pids.append(int(name.rpartition("pid=")[2]))
        return pids

    def leader(self, timeout: float = 20.0) -> Replica:
        found: list[Replica] = []

        def one() -> bool:
            pids = self.leader_pids()
            replica = self.replica_by_pid(pids[0]) if len(pids) == 1 else None
            if replica is not None:
                found.append(replica)
            return replica is not None

        if not wait_until(one, timeout, 0.1):
            raise RuntimeError(f"no single leader within {timeout}s: {self.leader_pids()}")
        return found[-1]

    # -- credentials ---------------------------------------------------------------------

    def principal(self, kind: str, out: Path) -> Path:
        """``mesh principal create`` against the shared database (replica 1's CA)."""
        subprocess.run(
            [MESH, "principal", "create", "--kind", kind,
             "--name", f"{kind}-{uuid.uuid4().hex[:8]}", "--out", str(out),
             "--data-dir", str(self.first.data_dir), "--database-url", self.database_url,
             "--trust-domain", TRUST_DOMAIN],
            check=True, capture_output=True, env=self.env, timeout=60,
        )
        return out

    def operator_tls(self) -> Any:
        from mesh.client.operator import operator_tls

        return operator_tls(self.first.data_dir)


@contextlib.contextmanager
def running_cluster(root: Path, size: int, **kwargs: Any) -> Iterator[Cluster]:
    cluster = Cluster(root, size, **kwargs)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
