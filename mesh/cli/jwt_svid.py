"""``mesh jwt-svid``: JWT-SVIDs for a registered agent (mTLS with its X.509-SVID)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import click

from mesh.cli._options import (
    addresses,
    agent_dir_option,
    duration_callback,
    mtls_option,
    registry_option,
    timeout_option,
)
from mesh.cli._output import emit_json
from mesh.client.agent import AgentClient


@click.group("jwt-svid")
def jwt_svid() -> None:
    """JWT-SVIDs (ES256) for the agent, for a given audience."""


@jwt_svid.command("fetch")
@click.option(
    "--audience", "-a", "audience", multiple=True, required=True, help="Audience; repeatable."
)
@click.option(
    "--ttl",
    callback=duration_callback,
    metavar="DURATION",
    help="Requested lifetime, e.g. 5m (capped by the registry). [default: the registry's, 5m]",
)
@agent_dir_option()
@registry_option(default=None)
@mtls_option
@timeout_option
@click.option(
    "--json", "as_json", is_flag=True, help='Print {"token", "spiffe_id", "expires_at"}.'
)
def fetch(
    audience: tuple[str, ...],
    ttl: timedelta | None,
    agent_dir: Path,
    registry: tuple[str, ...],
    registry_mtls: tuple[str, ...],
    timeout: float,
    as_json: bool,
) -> None:
    """Fetch a JWT-SVID and print the token on stdout (a bearer credential: handle with care)."""
    with AgentClient(
        addresses(registry, None) or None,
        agent_dir,
        mtls_registry=addresses(registry_mtls, None) or None,
        timeout=timeout,
    ) as client:
        result = client.fetch_jwt_svid_details(list(audience), ttl)
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(result.token)
