"""Shared set-up for the store tests: a migrated database per back end, reset
per test instead of re-created (creating and migrating a PostgreSQL database
costs about a second; emptying one costs milliseconds)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from registry.store import Store, open_store
from registry.store.schema import metadata

_DATA_TABLES = [t.name for t in metadata.sorted_tables if t.name != "sequence_counters"]


@pytest.fixture(scope="session")
def store_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("store-template")
    s = open_store(None, directory)
    s.upgrade()
    s.close()
    return directory / "registry.db"


@pytest.fixture(scope="session")
def store_pg_database(postgres_admin_url: str) -> Iterator[str]:
    import psycopg

    admin = make_url(postgres_admin_url)
    dsn = f"host={admin.host} port={admin.port} user={admin.username} dbname={admin.database}"
    name = f"trustmesh_store_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.set(database=name).render_as_string(hide_password=False)
    try:
        s = open_store(url, Path("."))
        s.upgrade()
        s.close()
        yield url
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _reset_postgres(url: str) -> None:
    import psycopg

    u = make_url(url)
    with psycopg.connect(
        f"host={u.host} port={u.port} user={u.username} dbname={u.database}", autocommit=True
    ) as conn:
        conn.execute(f"TRUNCATE {', '.join(_DATA_TABLES)}")
        conn.execute("UPDATE sequence_counters SET value = 0")


def make_store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    clock: Callable[[], datetime] | None = None,
) -> Store:
    """An empty, migrated store for ``request.param`` ("sqlite" or "postgresql")."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("store_sqlite_template")
        data = tmp_path / "data"
        data.mkdir()
        shutil.copy(template, data / "registry.db")
        return open_store(None, data, clock=clock)
    url: str = request.getfixturevalue("store_pg_database")
    _reset_postgres(url)
    return open_store(url, tmp_path, clock=clock)
