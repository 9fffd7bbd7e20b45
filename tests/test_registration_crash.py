"""A SQLite registry killed with SIGKILL while 48 clients register at once (their
writes applied in group commits).

Every registration that was answered OK is in the database after the restart;
nothing is half-written (each agent has its key, SVID record, event and audit
entry; every consumed token and recorded challenge belongs to an agent);
sequences have no gaps and ``mesh audit verify`` passes.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from _cluster import MESH, Replica, wait_until
from fixtures_registry import make_csr

from mesh.client import OperatorClient
from mesh.client.operator import operator_tls
from mesh.keys import IdentityKey
from mesh.registration import sign_proof
from mesh.v1 import registration_pb2, registration_pb2_grpc

CLIENTS = 48
PER_CLIENT = 6


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Replica]:
    env = {**os.environ, "MESH_LOG_LEVEL": "warning"}
    replica = Replica(1, tmp_path / "data", "", env)
    replica.start()
    try:
        replica.wait_ready(60)
        yield replica
    finally:
        replica.kill()


def _register(stub: registration_pb2_grpc.RegistrationServiceStub, token: str) -> str:
    identity = IdentityKey.generate()
    _, csr = make_csr()
    challenge = stub.GetChallenge(registration_pb2.GetChallengeRequest(), timeout=20)
    response = stub.Register(
        registration_pb2.RegisterRequest(
            join_token=token,
            public_key=identity.public_key,
            challenge=challenge.nonce,
            proof=sign_proof(identity, challenge.trust_domain, challenge.nonce, csr),
            csr=csr,
        ),
        timeout=20,
    )
    assert response.created
    return str(response.did)


def test_kill_9_under_load_loses_nothing_acknowledged(server: Replica) -> None:
    data = server.data_dir
    with OperatorClient(
        server.address, tls=operator_tls(data), mtls_registry=server.mtls_address
    ) as operator:
        tokens = [operator.create_token(f"crash/agent-{i}").token
                  for i in range(CLIENTS * PER_CLIENT)]
    bundle = (data / "bundle.pem").read_bytes()
    acknowledged: list[str] = []
    refused: list[grpc.StatusCode] = []
    lock = threading.Lock()
    go = threading.Event()

    def client(i: int) -> None:
        channel = grpc.secure_channel(
            server.address, grpc.ssl_channel_credentials(root_certificates=bundle)
        )
        stub = registration_pb2_grpc.RegistrationServiceStub(channel)
        go.wait(30)
        try:
            for j in range(PER_CLIENT):
                try:
                    did = _register(stub, tokens[i * PER_CLIENT + j])
                except grpc.RpcError as exc:
                    with lock:
                        refused.append(exc.code())
                    return
                with lock:
                    acknowledged.append(did)
        finally:
            channel.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    go.set()
    assert wait_until(lambda: len(acknowledged) >= 40, 120)
    server.kill()
    at_kill = len(acknowledged)
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a client hung"
    # Only the kill stopped anyone: each client failed as a connection failure does.
    assert refused and set(refused) <= {
        grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED,
    }, refused
    assert len(acknowledged) >= at_kill

    server.start()
    server.wait_ready(60)
    with OperatorClient(
        server.address, tls=operator_tls(data), mtls_registry=server.mtls_address
    ) as operator:
        token = operator.create_token("crash/after").token
    with grpc.secure_channel(
        server.address, grpc.ssl_channel_credentials(root_certificates=bundle)
    ) as channel:
        stub = registration_pb2_grpc.RegistrationServiceStub(channel)
        acknowledged.append(_register(stub, token))
    assert server.terminate() == 0

    db = sqlite3.connect(data / "registry.db")
    try:
        def one(sql: str, *args: object) -> int:
            return int(db.execute(sql, args).fetchone()[0])

        agents = {row[0] for row in db.execute("SELECT did FROM agents")}
        assert set(acknowledged) <= agents
        for did in agents:
            assert one("SELECT count(*) FROM agent_keys WHERE did = ?", did) == 1
            assert one("SELECT count(*) FROM svids WHERE did = ?", did) == 1
            assert one(
                "SELECT count(*) FROM events WHERE agent_did = ? AND type = 'agent.registered'",
                did,
            ) == 1
            assert one(
                "SELECT count(*) FROM audit_log WHERE subject = ? AND action = 'agent.register'",
                did,
            ) == 1
        used = {row[0] for row in db.execute(
            "SELECT used_by_did FROM join_tokens WHERE used_at IS NOT NULL"
        )}
        assert used == agents
        assert one("SELECT count(*) FROM challenges") == len(agents)
        for table in ("events", "audit_log"):
            query = f"SELECT count(*), min(seq), max(seq) FROM {table}"
            count, low, high = db.execute(query).fetchone()
            assert (low, high) == (1, count), table
            counter = "events" if table == "events" else "audit"
            assert one("SELECT value FROM sequence_counters WHERE name = ?", counter) == count
    finally:
        db.close()
    verified = subprocess.run(
        [MESH, "audit", "verify", "--data-dir", str(data)],
        capture_output=True, text=True, timeout=60,
    )
    assert verified.returncode == 0, verified.stderr
    assert "intact" in verified.stdout
