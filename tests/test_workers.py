"""``mesh serve --workers N``: several serving processes sharing ports and a SQLite store.

Real processes on loopback: the supervisor, its workers, clients over TLS.

* connections land on different workers, and the workers act as one registry:
  an agent registered through one worker renews through another, and a Watch
  stream on one worker sees a registration made through the other;
* exactly one worker leads; a worker killed with -9 is restarted by the
  supervisor, leadership moves on, and registration goes on meanwhile;
* SIGTERM to the supervisor stops every worker and exits 0;
* the parts (file lock, leadership, wake-ups) on their own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from _cluster import MESH, free_port_pair, wait_until
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mesh.keys import IdentityKey
from mesh.registration import sign_proof
from mesh.v1 import (
    events_pb2,
    events_pb2_grpc,
    registration_pb2,
    registration_pb2_grpc,
    tokens_pb2,
    tokens_pb2_grpc,
)
from registry.config import ConfigError, load_config
from registry.filelock import FileLock
from registry.workers import (
    FileLeadership,
    Wakeups,
    Worker,
    metrics_listen_for,
)

TRUST_DOMAIN = "workers.mesh"


# -- which worker serves a connection ---------------------------------------------------


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(c) for c in f.read().split()]
    return out


def _socket_owners(pids: list[int]) -> dict[int, int]:
    """Socket inode -> owning pid, for ``pids``."""
    owners: dict[int, int] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                owners[int(target[8:-1])] = pid
    return owners


def _connections(port: int) -> dict[tuple[str, int], int]:
    """Established server-side connections on ``port``: (peer address, port) -> inode.

    gRPC listens on dual-stack sockets, so IPv4 peers show up in tcp6 as v4-mapped."""
    out: dict[tuple[str, int], int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
                if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                    address, peer_port = remote.rsplit(":", 1)
                    out[(address, int(peer_port, 16))] = inode
    return out


@dataclass
class Group:
    """A supervisor and its workers."""

    proc: subprocess.Popen[bytes]
    data_dir: Path
    port: int
    log_path: Path
    postgres: bool = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def mtls_address(self) -> str:
        return f"127.0.0.1:{self.port + 1}"

    @property
    def workers(self) -> list[int]:
        return _children(self.proc.pid) if self.proc.poll() is None else []

    @property
    def bundle(self) -> bytes:
        return (self.data_dir / "bundle.pem").read_bytes()

    def log(self) -> list[dict[str, object]]:
        entries = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
        return entries

    def leaders(self, event: str = "worker.leader") -> list[str]:
        """Who logged becoming the leader (SQLite: the pid; PostgreSQL: ``replica.leader``
        with its connection's application name), in order."""
        return [
            str(e.get("pid") or e.get("application")) for e in self.log() if e.get("event") == event
        ]

    def channel_on(self, worker: int, *, mtls: bool, tries: int = 200) -> grpc.Channel:
        """A connected channel that ``worker`` serves (opening new ones until one lands there)."""
        port = self.port + 1 if mtls else self.port
        for _ in range(tries):
            before = set(_connections(port))
            channel = self._channel(mtls)
            grpc.channel_ready_future(channel).result(timeout=10)
            new = {k: v for k, v in _connections(port).items() if k not in before}
            owners = _socket_owners(self.workers)
            if any(owners.get(inode) == worker for inode in new.values()):
                return channel
            channel.close()
        raise AssertionError(f"no connection landed on worker {worker} in {tries} tries")

    def _channel(self, mtls: bool) -> grpc.Channel:
        options = [("grpc.use_local_subchannel_pool", 1)]
        if not mtls:
            creds = grpc.ssl_channel_credentials(root_certificates=self.bundle)
            return grpc.secure_channel(self.address, creds, options=options)
        operator = self.data_dir / "operator"
        creds = grpc.ssl_channel_credentials(
            self.bundle,
            private_key=(operator / "operator.key").read_bytes(),
            certificate_chain=(operator / "operator.pem").read_bytes(),
        )
        return grpc.secure_channel(self.mtls_address, creds, options=options)


def _start(root: Path, count: int = 2, database_url: str = "") -> Group:
    port = free_port_pair()
    data_dir = root / "data"
    log_path = root / "serve.log"
    env = {**os.environ, "MESH_LOG_LEVEL": "info", "MESH_TRUST_RECOMPUTE_INTERVAL_SECONDS": "1"}
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [MESH, "serve", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}",
             "--trust-domain", TRUST_DOMAIN, "--log-format", "json", "--workers", str(count),
             *(["--database-url", database_url] if database_url else [])],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    group = Group(proc, data_dir, port, log_path, postgres=bool(database_url))

    def serving() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"mesh serve exited:\n{log_path.read_text()}")
        started = [e for e in group.log() if e.get("event") == "registry.started"]
        return len(started) >= count and len(group.workers) == count

    assert wait_until(serving, 90, 0.1), log_path.read_text()
    return group


def _stop(group: Group) -> int:
    if group.proc.poll() is None:
        group.proc.send_signal(signal.SIGTERM)
    try:
        return group.proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(group.proc.pid, signal.SIGKILL)
        group.proc.wait(10)
        raise


@pytest.fixture
def group(tmp_path: Path) -> Iterator[Group]:
    g = _start(tmp_path)
    try:
        yield g
    finally:
        _stop(g)


@pytest.fixture(params=["sqlite", "postgres"])
def any_group(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Group]:
    """Workers over SQLite, and over PostgreSQL (where the replicas' machinery
    elects the leader and carries the wake-ups)."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else ""
    g = _start(tmp_path, database_url=url)
    try:
        yield g
    finally:
        _stop(g)


def _csr() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


def _token(operator: grpc.Channel) -> str:
    stub = tokens_pb2_grpc.JoinTokenServiceStub(operator)
    reply = stub.CreateJoinToken(
        tokens_pb2.CreateJoinTokenRequest(agent_name="workers/agent", ttl_seconds=600),
        timeout=10,
    )
    return str(reply.token)


def _register(public: grpc.Channel, token: str) -> registration_pb2.RegisterResponse:
    stub = registration_pb2_grpc.RegistrationServiceStub(public)
    identity, csr = IdentityKey.generate(), _csr()
    challenge = stub.GetChallenge(registration_pb2.GetChallengeRequest(), timeout=10)
    reply: registration_pb2.RegisterResponse = stub.Register(
        registration_pb2.RegisterRequest(
            join_token=token, public_key=identity.public_key, challenge=challenge.nonce,
            proof=sign_proof(identity, challenge.trust_domain, challenge.nonce, csr), csr=csr,
        ),
        timeout=10,
    )
    return reply


# -- the group as one registry ----------------------------------------------------------


def test_workers_share_connections_store_and_events(any_group: Group) -> None:
    group = any_group
    first, second = group.workers
    public_second = group.channel_on(second, mtls=False)
    operator_first = group.channel_on(first, mtls=True)

    # A Watch stream served by the first worker ...
    watch = events_pb2_grpc.EventServiceStub(operator_first).Watch(
        events_pb2.WatchRequest(from_sequence=0), timeout=60
    )
    seen: list[str] = []
    synced = threading.Event()
    arrived = threading.Event()

    def follow() -> None:
        try:
            for item in watch:
                if item.HasField("snapshot_done"):
                    synced.set()
                elif item.HasField("event") and item.event.agent_did:
                    seen.append(item.event.agent_did)
                    arrived.set()
        except grpc.RpcError:
            pass

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    assert synced.wait(20)

    # ... sees an agent registered through the second worker.
    reply = _register(public_second, _token(operator_first))
    assert reply.created
    assert arrived.wait(20), "the registration made on one worker never reached the other"
    assert reply.did in seen
    watch.cancel()

    # Both workers answered for the one store: the same agent re-registers (same key
    # is not needed here: a second token-less call would need the key) -- instead the
    # operator on the first worker finds the agent the second worker created.
    from mesh.v1 import agents_pb2, agents_pb2_grpc

    agent = agents_pb2_grpc.AgentServiceStub(operator_first).GetAgent(
        agents_pb2.GetAgentRequest(did=reply.did), timeout=10
    )
    assert agent.did == reply.did
    event = "replica.leader" if group.postgres else "worker.leader"
    assert wait_until(lambda: len(group.leaders(event)) == 1, 20)
    time.sleep(1.5)  # another leader would have appeared within a ping
    assert len(group.leaders(event)) == 1


def test_a_killed_worker_is_restarted_and_leadership_moves(group: Group) -> None:
    assert wait_until(lambda: len(group.leaders()) == 1, 20)
    leader = int(group.leaders()[0])
    survivors = [pid for pid in group.workers if pid != leader]
    os.kill(leader, signal.SIGKILL)

    # The other worker goes on serving registrations meanwhile.
    operator = group.channel_on(survivors[0], mtls=True)
    public = group.channel_on(survivors[0], mtls=False)
    assert _register(public, _token(operator)).created

    def replaced() -> bool:
        workers = group.workers
        return len(workers) == 2 and leader not in workers

    assert wait_until(replaced, 30), group.log_path.read_text()[-3000:]
    assert wait_until(lambda: len(group.leaders()) == 2, 20)
    assert int(group.leaders()[1]) in group.workers
    started = [e for e in group.log() if e.get("event") == "registry.started"]
    assert wait_until(
        lambda: len([e for e in group.log() if e.get("event") == "registry.started"]) == 3, 60
    ), started
    # The restarted worker serves as well.
    newcomer = next(pid for pid in group.workers if pid not in survivors)
    assert _register(group.channel_on(newcomer, mtls=False), _token(operator)).created


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    g = _start(tmp_path)
    workers = g.workers
    g.proc.kill()
    g.proc.wait(10)
    assert wait_until(lambda: all(_zombie(pid) for pid in workers), 30), workers


def test_sigterm_stops_every_worker(tmp_path: Path) -> None:
    g = _start(tmp_path)
    workers = g.workers
    assert _stop(g) == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


# -- configuration ----------------------------------------------------------------------


def test_workers_need_fixed_ports_and_a_sane_count() -> None:
    with pytest.raises(ConfigError, match="listen port 0 with workers=2"):
        load_config(None, overrides={"workers": 2, "listen": "127.0.0.1:0"}, env={})
    with pytest.raises(ConfigError, match="workers must be between 1 and 64"):
        load_config(None, overrides={"workers": 0}, env={})
    with pytest.raises(ConfigError, match="workers must be between 1 and 64"):
        load_config(None, overrides={"workers": 65}, env={})
    assert load_config(None, overrides={"workers": 4}, env={}).workers == 4
    assert load_config(None, env={"MESH_WORKERS": "3"}).workers == 3


def test_worker_identity_and_metrics_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESH_WORKER_INDEX", raising=False)
    assert Worker.from_env(4) is None
    monkeypatch.setenv("MESH_WORKER_INDEX", "2")
    assert Worker.from_env(4) == Worker(2, 4)
    assert Worker.from_env(1) is None
    assert metrics_listen_for("127.0.0.1:9100", Worker(2, 4)) == "127.0.0.1:9102"
    assert metrics_listen_for("127.0.0.1:9100", None) == "127.0.0.1:9100"
    assert metrics_listen_for("", Worker(1, 2)) == ""


# -- the parts --------------------------------------------------------------------------


def test_file_lock_excludes_and_times_out(tmp_path: Path) -> None:
    a, b = FileLock(tmp_path / "x.lock"), FileLock(tmp_path / "x.lock", keep_open=False)
    assert a.try_acquire()
    assert not b.try_acquire()
    started = time.monotonic()
    assert not b.acquire(timeout=0.1)
    assert time.monotonic() - started >= 0.1
    a.release()
    assert b.acquire(timeout=1)
    assert not a.try_acquire()
    b.release()
    a.close()


@contextmanager
def _held_elsewhere(path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Another process holding the file lock at ``path`` (kill it to free the lock)."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import time; from pathlib import Path; from registry.filelock import FileLock;"
         f"lock = FileLock(Path({str(path)!r})); assert lock.acquire(5);"
         "print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        yield holder
    finally:
        holder.kill()
        holder.wait(10)


def test_file_lock_is_freed_when_its_holder_dies(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    with _held_elsewhere(path) as holder:
        lock = FileLock(path)
        assert not lock.try_acquire()
        holder.kill()
        holder.wait(10)
        assert lock.acquire(timeout=5)
        lock.close()


def test_exactly_one_file_leader_and_takeover(tmp_path: Path) -> None:
    a = FileLeadership(tmp_path, ping=0.05)
    b = FileLeadership(tmp_path, ping=0.05)
    a.start()
    b.start()
    try:
        assert wait_until(lambda: a.is_leader or b.is_leader, 5)
        time.sleep(0.3)
        assert a.is_leader != b.is_leader
        leader, other = (a, b) if a.is_leader else (b, a)
        leader.stop()
        assert wait_until(lambda: other.is_leader, 5)
        assert other.terms == 1
    finally:
        a.stop()
        b.stop()


def test_wakeups_reach_the_other_workers(tmp_path: Path) -> None:
    woken = [threading.Event() for _ in range(3)]
    group = [Wakeups(tmp_path, Worker(i, 3), woken[i].set) for i in range(3)]
    for w in group:
        w.start()
    try:
        group[1].send()
        assert woken[0].wait(5) and woken[2].wait(5)
        assert not woken[1].is_set()
        assert group[0].received >= 1
    finally:
        for w in group:
            w.stop()
    # Another data directory's workers are not woken.
    other = Wakeups(tmp_path / "other", Worker(0, 2), lambda: None)
    other.start()
    try:
        lone = Wakeups(tmp_path, Worker(1, 2), lambda: None)
        lone.start()
        lone.send()
        time.sleep(0.2)
        assert other.received == 0
        lone.stop()
    finally:
        other.stop()


def test_sqlite_writers_in_other_processes_queue_on_the_lock_file(tmp_path: Path) -> None:
    from registry.store import StoreOptions, StoreUnavailable, open_store

    store = open_store(None, tmp_path, options=StoreOptions(busy_timeout_seconds=0.3))
    store.upgrade()
    lock_file = Path(str(store.engine.url.database) + "-writer.lock")
    try:
        with _held_elsewhere(lock_file) as holder:
            with pytest.raises(StoreUnavailable, match="write lock"):
                with store.transaction() as tx:
                    tx.audit.append("test", "nothing", "-", {})
            holder.kill()
            holder.wait(10)
            with store.transaction() as tx:
                tx.audit.append("test", "written", f"id-{uuid.uuid4().hex[:6]}", {})
    finally:
        store.close()


def test_an_unwritable_lock_file_is_unavailable_not_internal(tmp_path: Path) -> None:
    from registry.store import StoreUnavailable, open_store

    store = open_store(None, tmp_path)
    store.upgrade()
    lock_file = Path(str(store.engine.url.database) + "-writer.lock")
    lock_file.unlink(missing_ok=True)
    lock_file.mkdir()  # a directory where the lock file should be: open() fails
    try:
        with pytest.raises(StoreUnavailable, match="write lock"):
            with store.transaction() as tx:
                tx.audit.append("test", "nothing", "-", {})
    finally:
        store.close()
