"""Full trust recompute of 100,000 agents on SQLite and PostgreSQL, scores persisted.

Populates a fresh store with N agents (current key, a third with reported
signals, a tenth with a recent violation), then times:

  trust_recompute_<db>_full_s         first full recompute: every agent scored, state,
                                      history and score/tier/ring events written
  trust_recompute_<db>_compute_only_s the pure part alone (scores, ring decisions, next
                                      due times; no store), one core: the floor for one run
  trust_recompute_<db>_agents_per_s   N / full time
  trust_recompute_<db>_events         events written by that run
  trust_recompute_<db>_due_s          a due-only run right after (what the scheduler does)
  trust_recompute_<db>_due_examined   agents it examined (0: nothing was due)

PostgreSQL figures are null when no server answers on 127.0.0.1:5432.
N defaults to 100,000 (BENCH_TRUST_AGENTS overrides).
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert

from registry.scoring import Recomputer
from registry.scoring.recompute import compute_one
from registry.store import open_store
from registry.store.schema import Agent, AgentKey, TrustSignal, TrustState

N = int(os.environ.get("BENCH_TRUST_AGENTS", "100000"))
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


def populate(store: Any, n: int) -> None:
    rng = random.Random(1)
    now = datetime.now(UTC)
    agents, keys, states, signals = [], [], [], []
    for i in range(n):
        did = f"did:mesh:bench{i:012d}"
        created = now - timedelta(days=rng.uniform(0, 60))
        agents.append(
            {
                "did": did, "name": f"bench/{i}", "spiffe_id": f"spiffe://bench/agent/{i}",
                "status": "active", "granted_ring": rng.choice((1, 2, 2, 2)), "metadata": {},
                "created_at": created, "updated_at": created, "revoked_at": None,
                "revoke_reason": None,
            }
        )
        keys.append(
            {
                "did": did, "key_index": 0, "kid": f"kid{i:040d}", "public_key": bytes(32),
                "valid_from": now - timedelta(days=rng.uniform(0, 50)), "rotated_at": None,
                "compromised_at": None,
            }
        )
        if i % 3 == 0:
            at = now - timedelta(hours=rng.uniform(0, 48))
            states.append(
                {
                    "did": did, "effective_ring": 2, "dirty": True, "updated_at": now,
                    "success_rate": rng.uniform(0.4, 1.0), "success_rate_at": at,
                    "success_rate_by": "spiffe://bench/reporter/sre",
                    "error_budget": rng.uniform(0, 1), "error_budget_at": at,
                    "error_budget_by": "spiffe://bench/reporter/sre",
                }
            )
        if i % 10 == 0:
            signals.append(
                {
                    "reporter": "spiffe://bench/reporter/sre", "report_id": uuid.uuid4().hex,
                    "position": 0, "agent_did": did, "kind": "violation", "value": None,
                    "severity": rng.choice(("low", "medium", "high", "critical")),
                    "reason": "bench", "observed_at": now - timedelta(days=rng.uniform(0, 10)),
                }
            )
    step = 10_000
    with store.transaction() as tx:
        for table, rows in (
            (Agent.__table__, agents),
            (AgentKey.__table__, keys),
            (TrustState.__table__, states),
            (TrustSignal.__table__, signals),
        ):
            for start in range(0, len(rows), step):
                tx.unit.execute(insert(table), rows[start : start + step])  # type: ignore[arg-type]


def measure(name: str, store: Any) -> dict[str, Any]:
    store.upgrade()
    populate(store, N)
    recomputer = Recomputer(store)
    # The pure part alone (trust scoring, ring decision, next due time), for the split.
    with store.read() as view:
        agents = view.trust.inputs()
    now = store.now()
    t0 = time.perf_counter()
    for agent in agents:
        compute_one(agent, (), now, recomputer.policy)
    compute_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    full = recomputer.run(everything=True)
    full_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    due = recomputer.run()
    due_s = time.perf_counter() - t0
    recomputer.close()
    assert full.examined == N
    return {
        f"trust_recompute_{name}_full_s": round(full_s, 2),
        f"trust_recompute_{name}_compute_only_s": round(compute_s, 2),
        f"trust_recompute_{name}_agents_per_s": round(N / full_s),
        f"trust_recompute_{name}_events": full.events,
        f"trust_recompute_{name}_due_s": round(due_s, 3),
        f"trust_recompute_{name}_due_examined": due.examined,
    }


def main() -> None:
    out: dict[str, Any] = {"trust_recompute_agents": N}
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(None, Path(tmp))
        try:
            out.update(measure("sqlite", store))
        finally:
            store.close()
    try:
        import psycopg

        db = f"trustmesh_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
    except Exception:
        out.update({"trust_recompute_postgresql_full_s": None})
    else:
        store = open_store(f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}", Path("."))
        try:
            out.update(measure("postgresql", store))
        finally:
            store.close()
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    print(json.dumps(out))


if __name__ == "__main__":
    main()
