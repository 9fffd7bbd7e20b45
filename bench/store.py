"""Registry store throughput: transactions/s of (agent insert + event + audit
entry), the write a registration makes, on SQLite (WAL, synchronous NORMAL and
FULL) and PostgreSQL, from 1 thread and from 8 threads.

Prints one flat JSON object. PostgreSQL figures need a server on
127.0.0.1:5432 (user postgres); the script creates and drops its own
database, and reports ``pg_note`` instead of figures when none is reachable.
Rates swing run to run; compare ratios measured in one run.
"""

from __future__ import annotations

import itertools
import json
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path

from registry.store import Store, StoreOptions, open_store

PG_HOST, PG_PORT = "127.0.0.1", 5432
SECONDS = 2.0
_IDS = itertools.count()  # unique agent numbers across every run in one database


def _write(store: Store, n: int) -> None:
    did = f"did:mesh:bench{n}"
    with store.transaction() as tx:
        tx.agents.create(did=did, name="bench", spiffe_id=f"spiffe://bench/agent/{n}")
        tx.audit.append("operator:bench", "agent.register", did, {"ring": 2})
        tx.events.append("agent.registered", did, {"ring": 2})


def _rate(store: Store, threads: int, seconds: float = SECONDS) -> float:
    lock = threading.Lock()
    done = [0]
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        count = 0
        while time.perf_counter() < deadline:
            with lock:
                n = next(_IDS)
            _write(store, n)
            count += 1
        with lock:
            done[0] += count

    start = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return done[0] / (time.perf_counter() - start)


def _measure(store: Store, prefix: str, out: dict[str, object]) -> None:
    store.upgrade()
    _write(store, -1)  # warm up: connections, statement caches
    out[f"{prefix}_tx_per_s_1_thread"] = round(_rate(store, 1))
    out[f"{prefix}_tx_per_s_8_threads"] = round(_rate(store, 8))


def _pg_reachable() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            return True
    except OSError:
        return False


def main() -> None:
    out: dict[str, object] = {"store_bench_seconds_per_figure": SECONDS}
    for sync in ("NORMAL", "FULL"):
        with tempfile.TemporaryDirectory() as tmp:
            store = open_store(None, Path(tmp), options=StoreOptions(sqlite_synchronous=sync))
            try:
                _measure(store, f"sqlite_{sync.lower()}", out)
            finally:
                store.close()

    if not _pg_reachable():
        out["pg_note"] = f"PostgreSQL not reachable on {PG_HOST}:{PG_PORT}; PG figures skipped"
    else:
        import psycopg

        dsn = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=postgres"
        name = f"trustmesh_bench_{uuid.uuid4().hex[:12]}"
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
        except psycopg.Error as error:
            out["pg_note"] = f"cannot create a PostgreSQL database: {error}".strip()
        else:
            try:
                store = open_store(
                    f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}", Path(".")
                )
                try:
                    _measure(store, "pg", out)
                finally:
                    store.close()
            finally:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(json.dumps(out))


if __name__ == "__main__":
    main()
