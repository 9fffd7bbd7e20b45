"""Alembic migrations: empty -> head on SQLite and PostgreSQL, and the models
match the migrated schema exactly (autogenerate finds nothing to do)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from registry.store import Store, head_revision, open_store, upgrade
from registry.store.migrate import alembic_config
from registry.store.schema import metadata

TABLES = {
    "agents",
    "agent_keys",
    "key_histories",
    "join_tokens",
    "challenges",
    "svids",
    "principals",
    "sequence_counters",
    "events",
    "audit_log",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def empty_store(url: str, tmp_path: Path) -> Iterator[Store]:
    s = open_store(url, tmp_path)
    yield s
    s.close()


def _diff(store: Store) -> list[object]:
    with store.engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))


def test_empty_to_head_matches_the_models(empty_store: Store) -> None:
    assert empty_store.schema_revision() is None
    assert TABLES.isdisjoint(inspect(empty_store.engine).get_table_names())
    empty_store.upgrade()
    assert empty_store.schema_revision() == head_revision()
    assert TABLES <= set(inspect(empty_store.engine).get_table_names())
    assert _diff(empty_store) == []
    with empty_store.engine.connect() as conn:
        counters = dict(conn.execute(text("SELECT name, value FROM sequence_counters")).all())
    assert counters == {"events": 0, "audit": 0}


def test_the_comparison_would_notice_a_drift(empty_store: Store) -> None:
    # Guard against a comparison that can never fail.
    empty_store.upgrade()
    with empty_store.engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_agents_name"))
    assert _diff(empty_store) != []


def test_upgrade_is_idempotent_and_downgrade_round_trips(empty_store: Store, url: str) -> None:
    empty_store.upgrade()
    empty_store.upgrade()
    upgrade(url)  # the `mesh db upgrade` entry point
    cfg = alembic_config()
    with empty_store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert TABLES.isdisjoint(inspect(empty_store.engine).get_table_names())
    empty_store.upgrade()
    assert _diff(empty_store) == []


def test_replicas_starting_together_migrate_once(url: str, tmp_path: Path) -> None:
    stores = [open_store(url, tmp_path) for _ in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def start(s: Store) -> None:
        barrier.wait()
        try:
            s.upgrade()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert all(s.schema_revision() == head_revision() for s in stores)
        with stores[0].engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM sequence_counters")).scalar() == 2
    finally:
        for s in stores:
            s.close()
