"""Shared test fixtures: conformance vectors, and real PostgreSQL / Redis.

PostgreSQL and Redis tests skip with instructions on a machine that lacks
them; under CI (CI=true) a missing service is a failure, not a skip.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _store_support import store_pg_database, store_sqlite_template  # noqa: F401

pytest_plugins = ["fixtures_registry"]

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT.parent / "shared" / "vectors"

PG_HOST, PG_PORT = "127.0.0.1", 5432
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379

_START_PG = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
_START_REDIS = 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no'


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _need(service: str, host: str, port: int, how: str) -> None:
    if _reachable(host, port):
        return
    message = f"{service} is not running on {host}:{port}; start it with: {how}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``disruptive`` (they stop the machine's PostgreSQL) run only when
    MESH_DISRUPTIVE_TESTS=1, and then alone: `.ci/run` gives them a serial step."""
    if os.environ.get("MESH_DISRUPTIVE_TESTS") == "1":
        return
    kept = [item for item in items if item.get_closest_marker("disruptive") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    if not VECTORS.is_dir():
        pytest.fail(
            f"conformance vectors not found at {VECTORS}: check out shared/ beside the repo"
        )
    return VECTORS


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    _need("PostgreSQL", PG_HOST, PG_PORT, _START_PG)
    return f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/postgres"


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import psycopg

    name = f"trustmesh_test_{uuid.uuid4().hex[:12]}"
    dsn = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url() -> str:
    _need("Redis", REDIS_HOST, REDIS_PORT, _START_REDIS)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """An empty, migrated store on each back end, with the real clock (a module
    that needs another clock defines its own ``store``)."""
    from _store_support import make_store

    s = make_store(request, tmp_path)
    yield s
    s.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[object]:
    """A fresh SQLite store (schema upgraded) in the test's directory."""
    from registry.store import open_store

    store = open_store(None, tmp_path)
    store.upgrade()
    yield store
    store.close()
