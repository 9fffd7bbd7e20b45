"""Alembic, run from code: ``Store.upgrade()`` at server start, ``upgrade(url)``
for ``mesh db upgrade``.

Migrations live in ``registry/migrations/versions``. To add one, change the
models in ``registry.store.schema``, then run::

    .venv/bin/alembic -c registry/migrations/alembic.ini \\
        -x url=sqlite:////tmp/scratch.db revision --autogenerate -m "what changed"

against a scratch database at head, review the file (plain ``sqlalchemy``
types, no imports from ``registry``), and ``tests/test_store_migrations.py``
checks that migrating from empty gives exactly the models on SQLite and
PostgreSQL. SQLite migrations run in batch mode (copy-and-move tables) with
foreign keys off, checked with ``PRAGMA foreign_key_check`` before commit;
PostgreSQL runs them in one transaction under an advisory lock, so replicas
starting together migrate once. Avoid non-transactional DDL such as
``CREATE INDEX CONCURRENTLY`` in migrations.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, text

from registry.store._internal.dberrors import SchemaNotReady, translated
from registry.store.errors import InvalidArgument, StoreError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# pg_advisory_xact_lock key: "trustmsh" as a 64-bit integer.
_PG_MIGRATION_LOCK = int.from_bytes(b"trustmsh", "big") & 0x7FFF_FFFF_FFFF_FFFF
_UPGRADE_HINT = "run `mesh db upgrade` (the server also upgrades at start)"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise StoreError("no migrations are packaged with this build")
    return head


def run_upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate ``engine``'s database to ``revision`` in one transaction."""
    cfg = alembic_config()
    with translated(), engine.connect() as conn:
        sqlite = engine.dialect.name == "sqlite"
        raw = conn.connection.dbapi_connection if sqlite else None
        if raw is not None:
            # Batch migrations copy tables; foreign keys must be off meanwhile
            # (the pragma is ignored inside a transaction, so set it first).
            raw.execute("PRAGMA foreign_keys = OFF")
            conn.execution_options(trustmesh_write=True)
        try:
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    conn.execute(
                        text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK}
                    )
                cfg.attributes["connection"] = conn
                try:
                    command.upgrade(cfg, revision)
                except CommandError as error:
                    raise InvalidArgument(f"cannot migrate to {revision!r}: {error}") from error
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise StoreError(
                            f"migration left {len(broken)} rows with dangling foreign keys; "
                            "rolled back"
                        )
        finally:
            if raw is not None:
                raw.execute("PRAGMA foreign_keys = ON")


def current_revision(engine: Engine) -> str | None:
    with translated(), engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def check_at_head(engine: Engine) -> None:
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaNotReady(
            f"the database schema is at revision {current or 'none'}, this build needs {head}",
            hint=_UPGRADE_HINT,
        )


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` (``mesh db upgrade``)."""
    from registry.store.engine import open_store

    if not url:
        raise InvalidArgument("a database URL is required", hint="e.g. sqlite:///.mesh/registry.db")
    store = open_store(url, Path("."))
    try:
        store.upgrade(revision)
    finally:
        store.close()
