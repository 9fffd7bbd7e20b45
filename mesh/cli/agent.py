"""``mesh agent``: list, inspect, revoke and terminate agents (operator credential)."""

from __future__ import annotations

from pathlib import Path

import click

from mesh.cli._options import operator_client, operator_options
from mesh.cli._output import emit_json, fields, note, table, when
from mesh.client.types import Agent, AgentStatus

_STATUSES = [s.value for s in AgentStatus if s is not AgentStatus.UNSPECIFIED]


@click.group("agent")
def agent() -> None:
    """Agents known to the registry: list, show, revoke, terminate (kill switch)."""


@agent.command("list")
@click.option("--status", type=click.Choice(_STATUSES), help="Only agents with this status.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@operator_options
def list_(
    status: str | None, as_json: bool, registry: tuple[str, ...],
    registry_mtls: tuple[str, ...], data_dir: Path, timeout: float
) -> None:
    """List agents."""
    with operator_client(registry, registry_mtls, data_dir, timeout) as client:
        agents = client.list_agents(AgentStatus(status) if status else None)
    if as_json:
        emit_json([a.to_dict() for a in agents])
        return
    table(
        ("DID", "NAME", "STATUS", "RING", "CREATED"),
        ((a.did, a.name, a.status.value, str(a.granted_ring), when(a.created_at)) for a in agents),
    )


@agent.command("show")
@click.argument("did")
@click.option("--json", "as_json", is_flag=True, help="Print the agent as JSON.")
@operator_options
def show(
    did: str, as_json: bool, registry: tuple[str, ...],
    registry_mtls: tuple[str, ...], data_dir: Path, timeout: float
) -> None:
    """Show one agent."""
    with operator_client(registry, registry_mtls, data_dir, timeout) as client:
        found = client.get_agent(did)
    if as_json:
        emit_json(found.to_dict())
        return
    _show(found)


@agent.command("revoke")
@click.argument("did")
@click.option("--reason", default="", help="Why (recorded in the audit trail; at most 512 bytes).")
@click.option("--json", "as_json", is_flag=True, help="Print the agent as JSON.")
@operator_options
def revoke(
    did: str, reason: str, as_json: bool, registry: tuple[str, ...],
    registry_mtls: tuple[str, ...], data_dir: Path, timeout: float
) -> None:
    """Revoke an agent: no more SVIDs, its keys stop verifying."""
    with operator_client(registry, registry_mtls, data_dir, timeout) as client:
        result = client.revoke_agent(did, reason)
    if as_json:
        emit_json(result.to_dict())
        return
    note(f"revoked {result.did} ({result.name})")


@agent.command("terminate")
@click.argument("did")
@click.option("--reason", default="", help="Why (recorded in the audit trail; at most 512 bytes).")
@click.option("--json", "as_json", is_flag=True, help="Print the agent as JSON.")
@operator_options
def terminate(
    did: str, reason: str, as_json: bool, registry: tuple[str, ...],
    registry_mtls: tuple[str, ...], data_dir: Path, timeout: float
) -> None:
    """Kill switch: revoke the agent and push termination to every enforcer."""
    with operator_client(registry, registry_mtls, data_dir, timeout) as client:
        result = client.terminate_agent(did, reason)
    if as_json:
        emit_json(result.to_dict())
        return
    note(f"terminated {result.did} ({result.name})")


def _show(a: Agent) -> None:
    pairs = [
        ("did", a.did),
        ("name", a.name),
        ("spiffe_id", a.spiffe_id),
        ("status", a.status.value),
        ("granted_ring", str(a.granted_ring)),
        ("current_key", a.current_key.kid if a.current_key else "-"),
        ("created_at", when(a.created_at)),
        ("updated_at", when(a.updated_at)),
    ]
    if a.revoked_at:
        pairs.append(("revoked_at", when(a.revoked_at)))
        pairs.append(("revoke_reason", a.revoke_reason or "-"))
    for name, value in sorted(a.metadata.items()):
        pairs.append((f"metadata.{name}", value))
    fields(pairs)
