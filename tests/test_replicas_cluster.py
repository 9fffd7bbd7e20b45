"""Three registry replicas on one PostgreSQL: real ``mesh serve`` processes on loopback.

* registrations spread over the replicas are visible from every one of them,
  and an SVID issued by one replica authenticates at another (one shared CA);
* an enforcer attached to replica 3 sees a demotion computed on replica 1;
* kill -9 of the leader moves the scheduled jobs to another replica within a
  bounded time, and only replicas that held the leader lock ever ran them;
* SIGTERM: Watch streams end with a resumable UNAVAILABLE and the enforcer
  resumes on another replica from its last sequence; the process exits 0.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from _cluster import Cluster, Replica, wait_until

from mesh.client import AgentClient, OperatorClient
from mesh.client.trust import TrustClient, ViolationReport, credential_tls
from mesh.enforcer import Enforcer
from mesh.enforcer.state import Change
from mesh.v1 import events_pb2, events_pb2_grpc

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def shared_cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres_admin_url: str
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    c = Cluster(root, 3, extra_env={"MESH_TRUST_RECOMPUTE_INTERVAL_SECONDS": "2"})
    try:
        c.start()
        yield c
    finally:
        c.close()


@pytest.fixture
def cluster(shared_cluster: Cluster) -> Iterator[Cluster]:
    """One cluster for the module (starting three is the slow part); a test that
    killed or stopped a replica gets it restarted afterwards (same data dir, ports)."""
    yield shared_cluster
    for replica in shared_cluster.replicas:
        if not replica.alive:
            replica.start()
    for replica in shared_cluster.replicas:
        replica.wait_ready(60)


def _register(cluster: Cluster, index: int, root: Path, token: str) -> str:
    replica = cluster.replicas[index]
    agent_dir = root / f"agent-{uuid.uuid4().hex[:6]}"
    with AgentClient(
        replica.address, agent_dir, cluster.bundle_pem,
        mtls_registry=replica.mtls_address,
    ) as agent:
        did = agent.register(token).did
        # The SVID replica `index` issued authenticates at the next replica's mTLS port.
        other = cluster.replicas[(index + 1) % len(cluster.replicas)]
        with AgentClient(
            other.address, agent_dir, cluster.bundle_pem, mtls_registry=other.mtls_address
        ) as again:
            assert again.renew().did == did
    return did


def _logged(replica: object, event: str) -> bool:
    text = replica.log_path.read_text(errors="replace")  # type: ignore[attr-defined]
    for line in text.splitlines():
        try:
            if json.loads(line).get("event") == event:
                return True
        except json.JSONDecodeError:
            continue
    return False


def test_three_replicas_share_registrations_demotions_and_the_scheduler(
    cluster: Cluster, tmp_path: Path
) -> None:
    # The module's first test: replica 1 started first and leads.
    assert cluster.leader().index == 1
    leaders_seen = {cluster.leader().pid}
    operator = OperatorClient(
        cluster.addresses, tls=cluster.operator_tls(), mtls_registry=cluster.mtls_addresses
    )
    # Registrations spread over the three replicas.
    dids = []
    for i in range(6):
        token = operator.create_token(f"cluster/agent-{i}").token
        dids.append(_register(cluster, i % 3, tmp_path, token))
    for replica in cluster.replicas:
        with OperatorClient(
            replica.address, tls=cluster.operator_tls(), mtls_registry=replica.mtls_address
        ) as one:
            assert {one.get_agent(did).did for did in dids} == set(dids)

    cluster.principal("enforcer", tmp_path / "enforcer")
    cluster.principal("reporter", tmp_path / "reporter")
    third = cluster.replicas[2]
    enforcer = Enforcer.from_dir(
        tmp_path / "enforcer", third.address, mtls_registry=third.mtls_address
    )
    demoted: dict[str, Change] = {}
    seen = threading.Condition()

    @enforcer.on_demotion
    def _record(change: Change) -> None:
        with seen:
            demoted[change.agent_did] = change
            seen.notify_all()

    first = cluster.replicas[0]
    reporter = TrustClient(
        first.address, tls=credential_tls(tmp_path / "reporter", "reporter"),
        mtls_registry=first.mtls_address,
    )
    operator_r1 = TrustClient(
        first.address, tls=cluster.operator_tls(), mtls_registry=first.mtls_address
    )
    with enforcer, reporter, operator_r1, operator:
        assert enforcer.wait_synced(30), enforcer.last_error
        # Everyone gets scored by the leader's scheduled recompute (replica 1).
        assert wait_until(
            lambda: all(
                (v := enforcer.state.get(d)) is not None and v.score is not None for d in dids
            ),
            30,
        )

        def demote(did: str, via: TrustClient) -> None:
            via.report_signals(
                did, report_id=uuid.uuid4().hex, success_rate=0.0, error_budget_remaining=0.0,
                violations=[ViolationReport("critical", "escaped its sandbox")],
            )

        # A demotion computed on replica 1, seen by the enforcer on replica 3.
        demote(dids[0], reporter)
        done = operator_r1.recompute([dids[0]])
        assert enforcer.wait_for(done["last_sequence"], 20)
        with seen:
            assert seen.wait_for(lambda: dids[0] in demoted, 20)
        assert enforcer.state.get(dids[0]).effective_ring == 3  # type: ignore[union-attr]

        # The leader dies: another replica takes the lock and runs the schedule.
        cluster.replicas[0].kill()
        successor = cluster.leader(timeout=30)
        assert successor.index in (2, 3)
        leaders_seen.add(successor.pid)
        second = cluster.replicas[1]
        with TrustClient(
            second.address, tls=credential_tls(tmp_path / "reporter", "reporter"),
            mtls_registry=second.mtls_address,
        ) as reporter2:
            demote(dids[1], reporter2)
        # No manual recompute this time: only the new leader's schedule can demote it.
        with seen:
            assert seen.wait_for(lambda: dids[1] in demoted, 30)
        # (The run logs after its transaction committed: give the line a moment.)
        assert wait_until(lambda: _logged(successor, "trust.recomputed"), 15)

    # Only replicas that held the leader lock ever ran a scheduled recompute.
    for replica in cluster.replicas:
        if _logged(replica, "trust.recomputed"):
            assert replica.pid in leaders_seen, replica.index
    assert cluster.leader_pids() == [successor.pid]


def test_sigterm_ends_streams_resumably_and_exits_cleanly(
    cluster: Cluster, tmp_path: Path
) -> None:
    operator = OperatorClient(
        cluster.addresses, tls=cluster.operator_tls(), mtls_registry=cluster.mtls_addresses
    )
    cluster.principal("enforcer", tmp_path / "enforcer")
    second, third = cluster.replicas[1], cluster.replicas[2]
    # The enforcer knows two replicas; it starts on replica 2.
    enforcer = Enforcer.from_dir(
        tmp_path / "enforcer", [second.address, third.address],
        mtls_registry=[second.mtls_address, third.mtls_address],
    )
    with enforcer, operator:
        assert enforcer.wait_synced(30), enforcer.last_error
        first_did = _register(cluster, 0, tmp_path, operator.create_token("sig/a").token)
        assert wait_until(lambda: enforcer.state.get(first_did) is not None, 20)
        before = enforcer.state.last_sequence
        # A raw stream on replica 2 too, to read the status it ends with.
        raw = grpc.secure_channel(second.mtls_address, cluster.operator_tls().credentials())
        stream = events_pb2_grpc.EventServiceStub(raw).Watch(
            events_pb2.WatchRequest(from_sequence=0), timeout=60
        )
        next(stream)
        ended: list[grpc.RpcError] = []

        def drain() -> None:
            try:
                for _ in stream:
                    pass
            except grpc.RpcError as exc:
                ended.append(exc)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        assert second.terminate(30) == 0
        reader.join(20)
        raw.close()
        assert ended and ended[0].code() == grpc.StatusCode.UNAVAILABLE, ended
        assert "resume with from_sequence" in (ended[0].details() or "")
        assert "registry.stopped" in second.tail(5)
        # Registered while the enforcer reconnects: it must arrive exactly once.
        later = _register(cluster, 2, tmp_path, operator.create_token("sig/b").token)
        assert wait_until(lambda: enforcer.state.get(later) is not None, 30), enforcer.last_error
        assert enforcer.state.last_sequence > before
        assert enforcer.state.get(first_did) is not None


def test_ca_rotation_on_any_replica_reaches_the_others_and_a_wrong_key_is_refused(
    cluster: Cluster, tmp_path: Path
) -> None:
    def status(replica: Replica) -> int:
        with OperatorClient(
            replica.address, tls=cluster.operator_tls(), mtls_registry=replica.mtls_address
        ) as one:
            return one.ca_status().sequence

    first, second, third = cluster.replicas
    start = status(first)
    with OperatorClient(
        first.address, tls=cluster.operator_tls(), mtls_registry=first.mtls_address
    ) as one:
        prepared = one.rotate_ca().sequence
    assert prepared > start
    assert wait_until(lambda: status(second) == status(third) == prepared, 30)
    # Activated on another replica (forced: no propagation wait in a test).
    with OperatorClient(
        second.address, tls=cluster.operator_tls(), mtls_registry=second.mtls_address
    ) as two:
        activated = two.rotate_ca(activate=True, force=True).sequence
    assert wait_until(lambda: status(first) == status(third) == activated, 30)
    # An SVID from the new authority (issued by replica 3) authenticates at replica 1.
    with OperatorClient(
        cluster.addresses, tls=cluster.operator_tls(), mtls_registry=cluster.mtls_addresses
    ) as operator:
        token = operator.create_token("ca/after").token
    assert _register(cluster, 2, tmp_path, token).startswith("did:mesh:")

    # A replica with another replica key cannot open the shared secrets: it refuses to start.
    env = dict(cluster.env, MESH_REPLICA_KEY="another-replica-key-0123456789")
    stranger = Replica(9, tmp_path / "r9" / "data", cluster.database_url, env)
    stranger.data_dir.parent.mkdir(parents=True)
    stranger.start()
    assert stranger.proc is not None
    assert stranger.proc.wait(60) != 0
    assert "replica key does not open the shared secrets" in stranger.tail()
