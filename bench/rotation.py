"""Credential rotation at fleet scale against a real registry (`mesh serve`, SQLite).

* ``request_rotation_all_seconds``: ``RequestRotationAll`` over 10,000 agents
  (the operator's ``mesh rotate-credentials --all``): one transaction marking
  every agent due with one ``agent.rotation_requested`` event each, measured
  at the client around the RPC; and ``GetRotationStatus`` over the campaign.
* ``rotations_per_s``: ``RotateKey`` calls the registry completes per second
  with 64 concurrent clients (each a distinct agent presenting its history
  extended by one rotation: the history is verified from the inception key,
  keys and history stored, an event and an audit entry written, in one
  transaction), and the registry's CPU time per rotation.

The agents are written into the registry's database before it starts (as if
registered earlier); the registry runs in its own process. Prints one flat
JSON object.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent))

from registration import TRUST_DOMAIN, _channels, _cpu_seconds, _start_server, _stop

from mesh.keyhistory import KeyHistory
from mesh.keys import IdentityKey
from mesh.spiffeid import TrustDomain, agent_spiffe_id
from mesh.v1 import rotation_pb2, rotation_pb2_grpc
from registry.store import open_store
from registry.store.schema import Agent, AgentKey
from registry.store.schema import KeyHistory as KeyHistoryRow

AGENTS = int(os.environ.get("BENCH_ROTATION_AGENTS", "10000"))
ROTATIONS = int(os.environ.get("BENCH_ROTATIONS", "2000"))
CLIENTS = 64


def _seed(data_dir: Path) -> list[str]:
    """AGENTS registered agents, 40 days old; returns the rotated histories for ROTATIONS.

    Written with bulk inserts into the tables Register fills (agents, their
    inception key and key history), as if registered 40 days ago.
    """
    data_dir.mkdir(mode=0o700, parents=True)
    store = open_store(None, data_dir)
    store.upgrade()
    td = TrustDomain.parse(TRUST_DOMAIN)
    incepted = (datetime.now(UTC) - timedelta(days=40)).replace(microsecond=0)
    rotated_at = (datetime.now(UTC) - timedelta(seconds=5)).replace(microsecond=0)
    rotations: list[str] = []
    agents, keys, histories = [], [], []
    for _ in range(AGENTS):
        key = IdentityKey.generate()
        history = KeyHistory.incept(key, incepted)
        did = str(history.did)
        agents.append({
            "did": did, "name": "bench/agent", "spiffe_id": str(agent_spiffe_id(td, history.did)),
            "status": "active", "granted_ring": 2, "metadata": {}, "created_at": incepted,
            "updated_at": incepted, "revoked_at": None, "revoke_reason": None,
        })
        keys.append({
            "did": did, "key_index": 0, "kid": key.kid, "public_key": key.public_key,
            "valid_from": incepted, "rotated_at": None, "compromised_at": None,
        })
        histories.append({"did": did, "history": history.to_json(), "updated_at": incepted})
        if len(rotations) < ROTATIONS:
            rotations.append(history.rotate(key, IdentityKey.generate(), rotated_at).to_json())
    with store.transaction() as tx:
        for table, rows in ((Agent, agents), (AgentKey, keys), (KeyHistoryRow, histories)):
            tx.unit.execute(insert(table.__table__), rows)
    store.close()
    return rotations


async def _run(port: int, data_dir: Path, rotations: list[str], pid: int) -> dict[str, Any]:
    public, operator = _channels(port, data_dir)
    op_keys = rotation_pb2_grpc.KeyServiceStub(operator)
    keys = rotation_pb2_grpc.KeyServiceStub(public)
    cpu = _cpu_seconds(pid)
    start = time.perf_counter()
    campaign = await op_keys.RequestRotationAll(
        rotation_pb2.RequestRotationAllRequest(older_than_seconds=30 * 86400, reason="bench"),
        timeout=600,
    )
    request_all = time.perf_counter() - start
    request_all_cpu = _cpu_seconds(pid) - cpu
    assert campaign.requested == AGENTS, campaign

    start = time.perf_counter()
    status = await op_keys.GetRotationStatus(
        rotation_pb2.GetRotationStatusRequest(campaign_id=campaign.id), timeout=600
    )
    status_seconds = time.perf_counter() - start
    assert status.pending == AGENTS

    queue: asyncio.Queue[str] = asyncio.Queue()
    for text in rotations:
        queue.put_nowait(text)

    async def worker() -> None:
        while True:
            try:
                text = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            response = await keys.RotateKey(
                rotation_pb2.RotateKeyRequest(key_history=text), timeout=60
            )
            assert response.rotated

    cpu = _cpu_seconds(pid)
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    elapsed = time.perf_counter() - start
    rotation_cpu = _cpu_seconds(pid) - cpu

    after = await op_keys.GetRotationStatus(
        rotation_pb2.GetRotationStatusRequest(campaign_id=campaign.id), timeout=600
    )
    assert after.rotated == len(rotations), after
    await public.close()
    await operator.close()
    return {
        "agents": AGENTS,
        "request_rotation_all_seconds": round(request_all, 3),
        "request_rotation_all_agents_per_s": round(AGENTS / request_all, 1),
        "request_rotation_all_server_cpu_s": round(request_all_cpu, 3),
        "rotation_status_seconds": round(status_seconds, 3),
        "rotations": len(rotations),
        "rotation_clients": CLIENTS,
        "rotations_per_s": round(len(rotations) / elapsed, 1),
        "server_cpu_ms_per_rotation": round(1000 * rotation_cpu / len(rotations), 3),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        started = time.perf_counter()
        rotations = _seed(data_dir)
        seed_seconds = time.perf_counter() - started
        proc, port = _start_server(data_dir, "")
        try:
            out = asyncio.run(_run(port, data_dir, rotations, proc.pid))
        finally:
            _stop(proc)
    out["seed_agents_seconds"] = round(seed_seconds, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
