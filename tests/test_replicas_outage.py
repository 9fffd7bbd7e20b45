"""PostgreSQL stopped for 10 s under load, then started again.

Disruptive: it stops the machine's PostgreSQL cluster, so it runs only when
``MESH_DISRUPTIVE_TESTS=1`` and alone (``.ci/run`` gives it its own serial step:
``pytest -m disruptive``). PostgreSQL is started again in a ``finally``.

During the outage callers get UNAVAILABLE (never INTERNAL or UNKNOWN) and every
replica reports NOT_SERVING; afterwards the same processes report SERVING
again by themselves, a Watch that lived through the outage sees new events,
and everything acknowledged before, during or after is in the database.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from _cluster import PG_CLUSTER, PG_PORT, Cluster, wait_until
from grpc_health.v1 import health_pb2

from mesh.client import AgentClient, OperatorClient, RetryPolicy
from mesh.client.errors import RegistryTimeout, RegistryUnavailable
from mesh.client.trust import TrustClient, credential_tls
from mesh.enforcer import Enforcer
from mesh.v1 import agents_pb2, agents_pb2_grpc

pytestmark = [pytest.mark.postgres, pytest.mark.disruptive]

OUTAGE_SECONDS = 10.0
CLIENTS = 12
#: Registrations per client, paced so the load outlasts the outage and the
#: recovery (a fast registry would otherwise finish them all before it).
TURNS = 40
PACE_SECONDS = 0.5
PG_CTL = f"pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) {PG_CLUSTER} {{}}"


def _pg(action: str) -> None:
    subprocess.run(PG_CTL.format(action), shell=True, check=True, timeout=60)


def _pg_ready() -> bool:
    return subprocess.run(
        ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(PG_PORT)], timeout=10, check=False
    ).returncode == 0


@pytest.fixture
def cluster(tmp_path: Path, postgres_admin_url: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "cluster", 3)
    try:
        c.start()
        yield c
    finally:
        if not _pg_ready():
            _pg("start")
            wait_until(_pg_ready, 60, 0.5)
        c.close()


def test_postgres_outage_is_unavailable_then_recovers_without_restart(
    cluster: Cluster, tmp_path: Path
) -> None:
    with OperatorClient(
        cluster.addresses, tls=cluster.operator_tls(), mtls_registry=cluster.mtls_addresses
    ) as operator:
        tokens = [
            operator.create_token(f"outage/{i}", ttl=3600).token
            for i in range(CLIENTS * TURNS)
        ]
    cluster.principal("reporter", tmp_path / "reporter")
    cluster.principal("enforcer", tmp_path / "enforcer")
    reporter_tls = credential_tls(tmp_path / "reporter", "reporter")
    pids = [r.pid for r in cluster.replicas]

    acknowledged: dict[str, str] = {}  # report id -> DID
    registered: list[str] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    stop = threading.Event()
    retry = RetryPolicy(rounds=2, initial_backoff=0.1, max_backoff=0.5)

    def client(i: int) -> None:
        turn = 0
        while not stop.is_set() and turn < TURNS:
            index = i * TURNS + turn
            addresses = cluster.addresses[i % 3 :] + cluster.addresses[: i % 3]
            mtls = cluster.mtls_addresses[i % 3 :] + cluster.mtls_addresses[: i % 3]
            try:
                with AgentClient(
                    addresses, tmp_path / "agents" / str(index), cluster.bundle_pem,
                    mtls_registry=mtls, retry=retry, timeout=5,
                ) as agent:
                    did = agent.register(tokens[index]).did
                with lock:
                    registered.append(did)
                turn += 1
                with TrustClient(
                    addresses, tls=reporter_tls, mtls_registry=mtls, retry=retry, timeout=5
                ) as reporter:
                    report_id = uuid.uuid4().hex
                    reporter.report_signals(did, report_id=report_id, success_rate=0.8)
                    with lock:
                        acknowledged[report_id] = did
                stop.wait(PACE_SECONDS)
            except BaseException as exc:
                with lock:
                    failures.append(exc)
                time.sleep(0.2)  # then the same registration again (same token, same key)

    enforcer = Enforcer.from_dir(
        tmp_path / "enforcer", cluster.addresses, mtls_registry=cluster.mtls_addresses
    )
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    raw = grpc.secure_channel(cluster.mtls_addresses[0], cluster.operator_tls().credentials())
    agents_stub = agents_pb2_grpc.AgentServiceStub(raw)
    outage_codes: list[grpc.StatusCode] = []
    try:
        with enforcer:
            assert enforcer.wait_synced(30), enforcer.last_error
            for thread in threads:
                thread.start()
            assert wait_until(lambda: len(registered) >= CLIENTS, 60)
            _pg("stop")
            try:
                outage_started = time.monotonic()
                # Every replica says NOT_SERVING while the database is away.
                for replica in cluster.replicas:
                    assert wait_until(
                        lambda r=replica: r.health(cluster.bundle_pem)  # type: ignore[misc]
                        == health_pb2.HealthCheckResponse.NOT_SERVING,
                        OUTAGE_SECONDS,
                        0.2,
                    ), replica.index
                # A call that needs the database: UNAVAILABLE, never INTERNAL.
                while time.monotonic() - outage_started < OUTAGE_SECONDS:
                    try:
                        agents_stub.ListAgents(agents_pb2.ListAgentsRequest(), timeout=5)
                    except grpc.RpcError as exc:
                        outage_codes.append(exc.code())
                    time.sleep(0.5)
            finally:
                _pg("start")
            assert wait_until(_pg_ready, 60, 0.5)
            # Back by themselves: same processes, SERVING again.
            for replica in cluster.replicas:
                assert wait_until(
                    lambda r=replica: r.health(cluster.bundle_pem)  # type: ignore[misc]
                    == health_pb2.HealthCheckResponse.SERVING,
                    60,
                    0.2,
                ), replica.tail()
            assert [r.pid for r in cluster.replicas] == pids
            assert all(r.alive for r in cluster.replicas)
            # Load carries on after the outage.
            after = len(registered)
            assert wait_until(lambda: len(registered) > after, 60)
            stop.set()
            for thread in threads:
                thread.join(120)
            assert not any(t.is_alive() for t in threads)
            # The stream that lived through the outage sees the newest registration.
            newest = registered[-1]
            assert wait_until(lambda: enforcer.state.get(newest) is not None, 30)
    finally:
        stop.set()
        raw.close()

    assert outage_codes and set(outage_codes) == {grpc.StatusCode.UNAVAILABLE}, outage_codes
    assert all(isinstance(f, RegistryUnavailable | RegistryTimeout) for f in failures), failures
    assert failures, "the outage was not noticed by any client"
    agents = {row[0] for row in cluster.query("SELECT did FROM agents")}
    assert set(registered) <= agents
    reports = dict(cluster.query("SELECT report_id, agent_did FROM trust_reports"))
    for report_id, did in acknowledged.items():
        assert reports.get(report_id) == did
    assert len(cluster.leader_pids()) == 1
