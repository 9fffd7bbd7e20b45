"""The parts of replication, one by one, against a real PostgreSQL database:
sealing, the leader lock and its takeover, LISTEN wake-ups, and health that
follows the database."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

from registry.health import StoreHealth
from registry.replica import (
    EventListener,
    Leadership,
    ReplicaKeyError,
    postgres_conninfo,
    seal,
    unseal,
    wait_until,
)
from registry.store import open_store

KEY = b"a-replica-key-of-enough-length"


def test_sealed_secrets_open_only_with_the_same_key() -> None:
    sealed = seal(KEY, b"ca material")
    assert b"ca material" not in sealed
    assert unseal(KEY, sealed) == b"ca material"
    with pytest.raises(ReplicaKeyError, match="does not open"):
        unseal(b"another-key-of-enough-length", sealed)
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(ReplicaKeyError):
        unseal(KEY, tampered)
    with pytest.raises(ReplicaKeyError, match="format"):
        unseal(KEY, b"not sealed at all")


@pytest.mark.postgres
def test_one_leader_at_a_time_and_takeover(postgres_url: str, tmp_path: Path) -> None:
    store = open_store(postgres_url, tmp_path)
    conninfo = postgres_conninfo(store)
    first, second = Leadership(conninfo, ping=0.1), Leadership(conninfo, ping=0.1)
    try:
        first.start()
        assert wait_until(lambda: first.is_leader, 10)
        second.start()
        # The second keeps trying and never leads while the first holds the lock.
        for _ in range(10):
            assert not second.is_leader
            threading.Event().wait(0.05)
        first.stop()
        assert not first.is_leader
        assert wait_until(lambda: second.is_leader, 10)
    finally:
        first.stop()
        second.stop()
        store.close()


@pytest.mark.postgres
def test_a_commit_elsewhere_wakes_the_listener(postgres_url: str, tmp_path: Path) -> None:
    store = open_store(postgres_url, tmp_path)
    store.upgrade()
    woken = threading.Event()
    listener = EventListener(postgres_conninfo(store), woken.set)
    try:
        listener.start()
        assert wait_until(lambda: woken.is_set(), 10)  # the wake-up after connecting
        woken.clear()
        with store.transaction() as tx:
            tx.events.append("trust.score_changed", None, {})
        assert woken.wait(10)
        assert listener.notifications >= 1
    finally:
        listener.stop()
        store.close()


@pytest.mark.postgres
def test_health_follows_the_database(postgres_url: str, tmp_path: Path) -> None:
    up = open_store(postgres_url, tmp_path)
    down = open_store("postgresql+psycopg://postgres@127.0.0.1:1/none", tmp_path)
    target = {"store": up}

    async def run() -> list[int]:
        health = health_aio.HealthServicer()
        # As the server does at start: everything SERVING, then the monitor follows.
        await health.set("mesh.v1.Test", health_pb2.HealthCheckResponse.SERVING)

        async def ping() -> None:
            await asyncio.to_thread(target["store"].ping)

        monitor = StoreHealth(health, ["mesh.v1.Test"], ping, interval=0.05)
        seen = []
        for store in (up, down, up):
            target["store"] = store
            await monitor.check()
            response = await health.Check(
                health_pb2.HealthCheckRequest(service="mesh.v1.Test"), None
            )
            seen.append(response.status)
        return seen

    try:
        assert asyncio.run(run()) == [
            health_pb2.HealthCheckResponse.SERVING,
            health_pb2.HealthCheckResponse.NOT_SERVING,
            health_pb2.HealthCheckResponse.SERVING,
        ]
    finally:
        up.close()
        down.close()
