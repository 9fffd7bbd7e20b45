"""``mesh token``: one-time join tokens for registering agents (operator credential)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import click

from mesh.cli._options import duration_callback, operator_client, operator_options
from mesh.cli._output import emit_json, note, table, when


@click.group("token")
def token() -> None:
    """Join tokens: create one per agent to register, list them, revoke them."""


@token.command("create")
@click.option(
    "--name",
    "agent_name",
    required=True,
    help='Agent name the token is bound to (path-like, e.g. "billing/worker-3").',
)
@click.option(
    "--ttl",
    callback=duration_callback,
    metavar="DURATION",
    help="Lifetime, e.g. 10m, 2h, 7d (at most 7d). [default: the registry's, 10m]",
)
@click.option(
    "--json", "as_json", is_flag=True, help='Print {"token", "id", "agent_name", "expires_at"}.'
)
@operator_options
def create(
    agent_name: str,
    ttl: timedelta | None,
    as_json: bool,
    registry: tuple[str, ...],
    registry_mtls: tuple[str, ...],
    data_dir: Path,
    timeout: float,
) -> None:
    """Create a join token; prints the secret (shown once) on stdout."""
    with operator_client(registry, registry_mtls, data_dir, timeout) as client:
        created = client.create_token(agent_name, ttl)
    if as_json:
        emit_json(created.to_dict())
        return
    click.echo(created.token)
    note(
        f"join token {created.info.id} for {created.info.agent_name}, "
        f"expires {when(created.info.expires_at)}; it works once"
    )


@token.command("list")
@click.option("--all", "include_inactive", is_flag=True, help="Include used, revoked, expired.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@operator_options
def list_(
    include_inactive: bool,
    as_json: bool,
    registry: tuple[str, ...],
    registry_mtls: tuple[str, ...],
    data_dir: Path,
    timeout: float,
) -> None:
    """List join tokens (ids and state, never the secrets)."""
    with operator_client(registry, registry_mtls, data_dir, timeout) as client:
        tokens = client.list_tokens(include_inactive)
    if as_json:
        emit_json([t.to_dict() for t in tokens])
        return
    table(
        ("ID", "AGENT NAME", "STATE", "EXPIRES", "USED BY"),
        (
            (t.id, t.agent_name, t.state(), when(t.expires_at), t.used_by_did or "-")
            for t in tokens
        ),
    )


@token.command("revoke")
@click.argument("token_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the revoked token as JSON.")
@operator_options
def revoke(
    token_id: str, as_json: bool, registry: tuple[str, ...],
    registry_mtls: tuple[str, ...], data_dir: Path, timeout: float
) -> None:
    """Revoke the join token ID so it can no longer register an agent."""
    with operator_client(registry, registry_mtls, data_dir, timeout) as client:
        revoked = client.revoke_token(token_id)
    if as_json:
        emit_json(revoked.to_dict())
        return
    note(f"revoked join token {revoked.id} ({revoked.agent_name})")
