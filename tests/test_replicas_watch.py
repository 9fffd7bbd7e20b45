"""1,000 Watch subscribers spread over three replicas during a burst of 10,000 events.

The events are committed to the shared database by writers outside the
replicas (four threads, 100 events per transaction), so every replica learns
of them only through PostgreSQL NOTIFY or its poll of the event table. Each
subscriber follows one agent; a few follow everything. Every subscriber must
receive exactly the events it asked for: none lost, none twice, each agent's
in the order they were written.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from _cluster import PG_PORT, Cluster

from mesh.client.trust import credential_tls
from mesh.keys import IdentityKey
from mesh.v1 import events_pb2, events_pb2_grpc
from registry.store import EVENTS_CHANNEL
from registry.store.schema import EVENTS_COUNTER

pytestmark = pytest.mark.postgres

SUBSCRIBERS = 1000
WATCH_ALL = 2  # of the subscribers, these follow every agent
AGENTS = 100
EVENTS = 10_000
PER_TRANSACTION = 100
WRITERS = 4
CHANNELS_PER_REPLICA = 10


@pytest.fixture
def cluster(tmp_path: Path, postgres_admin_url: str) -> Iterator[Cluster]:
    # No scheduled recompute noise: only the burst's events are in the table.
    c = Cluster(
        tmp_path / "cluster", 3, extra_env={"MESH_TRUST_RECOMPUTE_INTERVAL_SECONDS": "3600"}
    )
    try:
        c.start()
        yield c
    finally:
        c.close()


def _write_burst(database: str, dids: list[str]) -> None:
    """10,000 events by the store's own protocol (the counter row taken for the
    whole transaction, so numbers follow commit order; NOTIFY at commit), in
    transactions of 100 from four concurrent writers."""
    import psycopg
    from psycopg.types.json import Jsonb

    per_writer = EVENTS // WRITERS

    def writer(w: int) -> None:
        dsn = f"host=127.0.0.1 port={PG_PORT} user=postgres dbname={database}"
        with psycopg.connect(dsn) as conn:
            for t in range(per_writer // PER_TRANSACTION):
                with conn.transaction():
                    high = conn.execute(
                        "UPDATE sequence_counters SET value = value + %s "
                        "WHERE name = %s RETURNING value",
                        (PER_TRANSACTION, EVENTS_COUNTER),
                    ).fetchone()[0]  # type: ignore[index]
                    low = high - PER_TRANSACTION + 1
                    now = datetime.now(UTC)
                    rows = [
                        (
                            seq,
                            "trust.score_changed",
                            dids[(w * per_writer + t * PER_TRANSACTION + k) % len(dids)],
                            Jsonb({"writer": w}),
                            now,
                        )
                        for k, seq in enumerate(range(low, high + 1))
                    ]
                    with conn.cursor() as cursor:
                        cursor.executemany(
                            "INSERT INTO events (seq, type, agent_did, payload, created_at) "
                            "VALUES (%s, %s, %s, %s, %s)",
                            rows,
                        )
                    conn.execute("SELECT pg_notify(%s, %s)", (EVENTS_CHANNEL, str(high)))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)


async def _follow(
    channel: grpc.aio.Channel,
    dids: list[str],
    ready: asyncio.Event,
    synced: list[int],
    expected: int,
    out: list[tuple[str, int]],
) -> None:
    stub = events_pb2_grpc.EventServiceStub(channel)
    stream = stub.Watch(events_pb2.WatchRequest(from_sequence=0, agent_dids=dids), timeout=240)
    async for item in stream:
        if item.HasField("snapshot_done"):
            synced.append(1)
            if len(synced) == SUBSCRIBERS:
                ready.set()
            continue
        if item.HasField("event"):
            out.append((item.event.agent_did, item.event.sequence))
            if len(out) == expected:
                stream.cancel()
                return


def test_a_thousand_subscribers_over_three_replicas_lose_and_repeat_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.principal("enforcer", tmp_path / "enforcer")
    tls = credential_tls(tmp_path / "enforcer", "enforcer")
    dids = [IdentityKey.generate().did() for _ in range(AGENTS)]
    dids_text = [str(d) for d in dids]
    per_agent = EVENTS // AGENTS

    async def run() -> list[list[tuple[str, int]]]:
        channels = [
            grpc.aio.secure_channel(address, tls.credentials())
            for address in cluster.mtls_addresses
            for _ in range(CHANNELS_PER_REPLICA)
        ]
        ready = asyncio.Event()
        synced: list[int] = []
        outs: list[list[tuple[str, int]]] = [[] for _ in range(SUBSCRIBERS)]
        tasks = []
        for j in range(SUBSCRIBERS):
            # Round-robin over replicas (and over each replica's channels).
            channel = channels[(j % 3) * CHANNELS_PER_REPLICA + (j // 3) % CHANNELS_PER_REPLICA]
            wanted = [] if j < WATCH_ALL else [dids_text[j % AGENTS]]
            expected = EVENTS if not wanted else per_agent
            tasks.append(
                asyncio.create_task(_follow(channel, wanted, ready, synced, expected, outs[j]))
            )
        await asyncio.wait_for(ready.wait(), 120)
        writer = asyncio.to_thread(_write_burst, cluster.database, dids_text)
        await asyncio.wait_for(writer, 300)
        done, pending = await asyncio.wait(tasks, timeout=240)
        for task in pending:
            task.cancel()
        for task in done:
            task.result()
        for channel in channels:
            await channel.close()
        assert not pending, f"{len(pending)} subscribers did not get all their events"
        return outs

    outs = asyncio.run(run())
    rows = cluster.query("SELECT seq, agent_did FROM events ORDER BY seq")
    assert len(rows) == EVENTS
    by_agent: dict[str, list[int]] = defaultdict(list)
    for seq, did in rows:
        by_agent[did].append(seq)
    for j, received in enumerate(outs):
        seqs = [seq for _, seq in received]
        if j < WATCH_ALL:
            assert seqs == [seq for seq, _ in rows], j
        else:
            did = dids_text[j % AGENTS]
            assert {d for d, _ in received} == {did}
            # Exactly the agent's events: none lost, none twice, in commit order.
            assert seqs == by_agent[did], j
