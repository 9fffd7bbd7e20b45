"""``mesh principal create|revoke|list``: reporter and enforcer credentials (registry host).

Run on the registry host with its data dir (CA keys and store), like ``mesh db``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from registry.principals import DEFAULT_TTL, KINDS


def _open(config_file: Path | None, flags: dict[str, Any]) -> tuple[Any, Any, Any]:
    import os

    from mesh.spiffeid import TrustDomain
    from registry.ca.certificate_authority import CertificateAuthority
    from registry.cli import _load
    from registry.store import open_store

    config = _load(config_file, **flags)
    passphrase = os.environ.get(config.ca_passphrase_env) if config.ca_passphrase_env else None
    ca = CertificateAuthority.open(
        config.data_dir, TrustDomain.parse(config.trust_domain), passphrase=passphrase or None
    )
    store = open_store(config.database_url or None, config.data_dir)
    store.check_schema()
    return config, ca, store


def _config_options(fn: Any) -> Any:
    from registry.cli import _config_options as options

    return options(fn)


@click.group("principal")
def principal() -> None:
    """Reporter and enforcer credentials (run on the registry host)."""


@principal.command("create")
@click.option("--kind", type=click.Choice(KINDS), required=True,
              help="reporter: sends trust signals; enforcer: watches every agent's ring.")
@click.option("--name", required=True, help="A name (letters, digits, '.', '-', '_').")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for <kind>.pem, <kind>.key (0600) and bundle.pem.")
@click.option("--ttl-days", type=click.IntRange(1, 90), default=DEFAULT_TTL.days,
              show_default=True, help="Certificate lifetime.")
@click.option("--renew", is_flag=True, help="Issue a new certificate for an existing principal.")
@_config_options
def create(kind: str, name: str, out: Path, ttl_days: int, renew: bool,
           config_file: Path | None, **flags: Any) -> None:
    """Create a reporter or enforcer and write its credential to --out."""
    from datetime import timedelta

    from registry.principals import issue_principal, write_credential

    _config, ca, store = _open(config_file, flags)
    try:
        credential = issue_principal(
            ca, store, kind, name, ttl=timedelta(days=ttl_days), renew=renew
        )
    finally:
        store.close()
    paths = write_credential(credential, out, ca.trust_anchors_pem())
    click.echo(f"{credential.spiffe_id}: wrote {', '.join(str(p) for p in paths)}", err=True)


@principal.command("revoke")
@click.option("--kind", type=click.Choice(KINDS), required=True)
@click.option("--name", required=True)
@_config_options
def revoke(kind: str, name: str, config_file: Path | None, **flags: Any) -> None:
    """Revoke a reporter or enforcer: every certificate it holds is refused from now on."""
    _config, _ca, store = _open(config_file, flags)
    try:
        with store.transaction() as tx:
            record = tx.principals.get_by_name(kind, name)
            tx.principals.revoke(record.id)
            tx.audit.append("operator:local", "principal.revoke", f"{kind}/{name}", {})
    finally:
        store.close()
    click.echo(f"{kind} {name} revoked", err=True)
