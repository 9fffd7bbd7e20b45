"""``mesh agent``: list, inspect, revoke and terminate agents (operator credential)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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
    """Show one agent, with its key age and key history."""
    with operator_client(registry, registry_mtls, data_dir, timeout) as client:
        found = client.get_agent(did)
        keys = client.resolve_did(did).keys
    now = datetime.now(UTC)
    age = _key_age(found, now)
    if as_json:
        document = found.to_dict()
        document["key_age_seconds"] = int(age.total_seconds()) if age is not None else None
        document["keys"] = [k.to_dict() for k in keys]
        emit_json(document)
        return
    _show(found, age)
    table(
        ("#", "KID", "VALID FROM", "ROTATED AT", "COMPROMISED AT"),
        (
            (str(k.index), k.kid, when(k.valid_from), when(k.rotated_at), when(k.compromised_at))
            for k in keys
        ),
        title="key history",
    )


@agent.command("compromise-key")
@click.argument("did")
@click.option("--kid", default="", help="The compromised key. [default: the current key]")
@click.option(
    "--at",
    "at_text",
    help="Since when (ISO 8601, e.g. 2026-05-01T12:00:00Z); signatures by the key at or "
    "after it are rejected. [default: now]",
)
@click.option("--reason", default="", help="Why (recorded in the audit trail).")
@click.option("--json", "as_json", is_flag=True, help="Print the key as JSON.")
@operator_options
def compromise_key(
    did: str, kid: str, at_text: str | None, reason: str, as_json: bool,
    registry: tuple[str, ...], registry_mtls: tuple[str, ...], data_dir: Path, timeout: float
) -> None:
    """Mark a key compromised: its signatures from then on are rejected at once, and the
    agent gets no SVID until it rotates (mesh rotate-credentials)."""
    at = _parse_time(at_text) if at_text else None
    with operator_client(registry, registry_mtls, data_dir, timeout) as client:
        key = client.mark_key_compromised(did, kid=kid, at=at, reason=reason)
    if as_json:
        emit_json(key.to_dict())
        return
    note(f"key {key.kid} of {did} is compromised as of {when(key.compromised_at)}")


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-05-01T12:00:00Z)", param_hint="--at"
        ) from None
    if value.tzinfo is None:
        raise click.BadParameter("give a time zone (e.g. a trailing Z for UTC)", param_hint="--at")
    return value.astimezone(UTC)


def _key_age(a: Agent, now: datetime) -> timedelta | None:
    if a.current_key is None or a.current_key.valid_from is None:
        return None
    return max(timedelta(0), now - a.current_key.valid_from)


def _age_text(age: timedelta | None) -> str:
    if age is None:
        return "-"
    seconds = int(age.total_seconds())
    days, rest = divmod(seconds, 86400)
    if days:
        return f"{days}d {rest // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 60}m {seconds % 60}s"


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


def _show(a: Agent, key_age: timedelta | None = None) -> None:
    pairs = [
        ("did", a.did),
        ("name", a.name),
        ("spiffe_id", a.spiffe_id),
        ("status", a.status.value),
        ("granted_ring", str(a.granted_ring)),
        ("current_key", a.current_key.kid if a.current_key else "-"),
        ("key_age", _age_text(key_age)),
        ("created_at", when(a.created_at)),
        ("updated_at", when(a.updated_at)),
    ]
    if a.revoked_at:
        pairs.append(("revoked_at", when(a.revoked_at)))
        pairs.append(("revoke_reason", a.revoke_reason or "-"))
    for name, value in sorted(a.metadata.items()):
        pairs.append((f"metadata.{name}", value))
    fields(pairs)
