"""Full trust recompute of 100,000 agents on SQLite and PostgreSQL, scores persisted.

Populates a fresh store with N agents (current key, a third with reported
signals, a tenth with a recent violation), then times:

  trust_recompute_<db>_full_s         first full recompute: every agent scored, state,
                                      history and score/tier/ring events written
  trust_recompute_<db>_full_cpu_s     CPU time of this process during it (all threads;
                                      PostgreSQL's own work is not in it, SQLite's is)
  trust_recompute_<db>_cpu_us_per_agent  that CPU time per agent
  trust_recompute_<db>_loop_stall_ms  longest gap seen by an asyncio loop ticking every
                                      1 ms on another thread during the full run (what a
                                      server's event loop would have waited)
  trust_recompute_<db>_compute_only_s the pure part alone (scores, ring decisions, next
                                      due times, breakdown and event payloads; no store),
                                      one core: the floor for one run
  trust_recompute_<db>_agents_per_s   N / full time
  trust_recompute_<db>_events         events written by that run
  trust_recompute_<db>_due_s          a due-only run right after (what the scheduler does)
  trust_recompute_<db>_due_examined   agents it examined (0: nothing was due)

PostgreSQL figures are null when no server answers on 127.0.0.1:5432.
N defaults to 100,000 (BENCH_TRUST_AGENTS overrides).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert

from registry.scoring import Recomputer
from registry.scoring.recompute import VIOLATION_HALF_LIVES
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


class LoopTicker:
    """An asyncio loop on its own thread, ticking every millisecond; ``stall_ms`` is
    the longest gap between two ticks beyond the millisecond asked for."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._tick()), daemon=True)

    async def _tick(self) -> None:
        last = time.perf_counter()
        while not self._stop.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.worst = max(self.worst, now - last - 0.001)
            last = now

    def __enter__(self) -> LoopTicker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def stall_ms(self) -> float:
        return round(self.worst * 1000, 1)


def measure(name: str, store: Any) -> dict[str, Any]:
    store.upgrade()
    populate(store, N)
    recomputer = Recomputer(store)
    # The pure part alone, on the rows and violations a full run reads.
    now = store.now()
    with store.read() as view:
        rows = view.trust.scoring_inputs()
        since = now - recomputer.policy.violation_recency.half_life * VIOLATION_HALF_LIVES
        violations = view.trust.violations(since)
    t0 = time.perf_counter()
    recomputer.scorer.score(rows, violations, now)
    compute_s = time.perf_counter() - t0
    del rows, violations
    with LoopTicker() as ticker:
        c0 = time.process_time()
        t0 = time.perf_counter()
        full = recomputer.run(everything=True)
        full_s = time.perf_counter() - t0
        full_cpu = time.process_time() - c0
    t0 = time.perf_counter()
    due = recomputer.run()
    due_s = time.perf_counter() - t0
    recomputer.close()
    assert full.examined == N
    return {
        f"trust_recompute_{name}_full_s": round(full_s, 2),
        f"trust_recompute_{name}_full_cpu_s": round(full_cpu, 2),
        f"trust_recompute_{name}_cpu_us_per_agent": round(full_cpu / N * 1e6, 1),
        f"trust_recompute_{name}_loop_stall_ms": ticker.stall_ms,
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
