"""Server-side ``mesh`` commands: ``serve``, ``db upgrade``, ``audit verify``.

Plugged into the ``mesh`` command line through the ``trustmesh.cli`` entry point.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import click

from registry.config import Config, load_config


def _config_options(fn: Any) -> Any:
    options = [
        click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
                     help="YAML configuration file (flags and MESH_* variables override it)."),
        click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                     help="Data directory (CA, SQLite, bundle.pem, operator credential). "
                     "Default ./.mesh"),
        click.option("--database-url", help="sqlite:///path or postgresql+psycopg://user@host/db "
                     "(default: SQLite in the data directory)."),
        click.option("--trust-domain", help="SPIFFE trust domain (default mesh.local)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _load(config_file: Path | None, **flags: Any) -> Config:
    if config_file is None and os.environ.get("MESH_CONFIG"):
        config_file = Path(os.environ["MESH_CONFIG"])
    return load_config(config_file, overrides=flags)


@click.command("serve")
@_config_options
@click.option("--listen", help="HOST:PORT for TLS without client certificates "
              "(registration, bundle, health; default 127.0.0.1:8443).")
@click.option("--mtls-listen", help="HOST:PORT for mutual TLS (agents, operators; "
              "default: the listen port + 1).")
@click.option("--metrics-listen", help="HOST:PORT for Prometheus metrics (default: off).")
@click.option("--log-format", type=click.Choice(["console", "json"]), help="Log format.")
@click.option("--workers", type=int, help="Serving processes sharing the ports and the data "
              "directory (default 1; one per core serves the most).")
def serve(config_file: Path | None, **flags: Any) -> None:
    """Run the registry: gRPC over TLS, with the CA and the store in the data directory."""
    from registry import logs
    from registry.workers import Supervisor, Worker, follow_supervisor

    config = _load(config_file, **flags)
    logs.configure(config.log_format, config.log_level)
    worker = Worker.from_env(config.workers)
    if config.workers > 1 and worker is None:
        argv = sys.argv[1:]
        raise SystemExit(Supervisor(argv, config.workers, config.grace_seconds).run())
    from registry.server import serve as run

    if worker is not None:
        follow_supervisor()
    asyncio.run(run(config, worker))


@click.group("db")
def db() -> None:
    """The registry database."""


@db.command("upgrade")
@_config_options
def db_upgrade(config_file: Path | None, **flags: Any) -> None:
    """Create or migrate the schema to the current version."""
    from registry.server import make_private_dir
    from registry.store import open_store

    config = _load(config_file, **flags)
    make_private_dir(config.data_dir)
    store = open_store(config.database_url or None, config.data_dir)
    try:
        store.upgrade()
        click.echo(f"schema at revision {store.schema_revision()}")
    finally:
        store.close()


@click.group("audit")
def audit() -> None:
    """The tamper-evident audit trail."""


@audit.command("verify")
@_config_options
def audit_verify(config_file: Path | None, **flags: Any) -> None:
    """Check the audit trail's hash chain; exit 1 at the first damaged entry."""
    from registry.store import open_store, verify_audit_chain

    config = _load(config_file, **flags)
    store = open_store(config.database_url or None, config.data_dir)
    try:
        result = verify_audit_chain(store)
    finally:
        store.close()
    if result.ok:
        click.echo(f"audit trail intact: {result.count} entries")
        return
    click.echo(
        f"audit trail damaged at entry {result.first_bad_seq} ({result.count} entries checked)",
        err=True,
    )
    raise SystemExit(1)


def commands() -> list[click.Command]:
    from registry.principals_cli import principal

    return [serve, db, audit, principal]
