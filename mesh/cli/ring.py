"""``mesh ring grant``: the execution ring an operator grants an agent."""

from __future__ import annotations

from pathlib import Path

import click
from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]

from mesh.cli._output import emit_json, note
from mesh.cli._trust import trust_client, trust_options
from mesh.errors import MeshError

RINGS = {"kernel": 0, "system": 1, "user": 2, "sandbox": 3}


def parse_ring(text: str) -> int:
    key = text.strip().lower()
    if key in RINGS:
        return RINGS[key]
    if key in ("0", "1", "2", "3"):
        return int(key)
    raise MeshError(
        f"unknown ring {text!r}", hint="use 0-3 or kernel, system, user, sandbox"
    )


@click.group("ring")
def ring() -> None:
    """Execution rings: 0 kernel, 1 system, 2 user, 3 sandbox."""


@ring.command("grant")
@click.argument("agent_did")
@click.argument("ring_name", metavar="RING")
@click.option("--reason", default="", help="Why (recorded in the audit trail).")
@click.option("--json", "as_json", is_flag=True, help="Print the agent's state as JSON.")
@trust_options
def grant(
    agent_did: str, ring_name: str, reason: str, as_json: bool, registry: tuple[str, ...],
    registry_mtls: tuple[str, ...], data_dir: Path, timeout: float,
) -> None:
    """Grant AGENT_DID the ring RING. The agent acts in the less privileged of this
    and the ring its trust tier allows; a promotion waits out the ring hysteresis."""
    value = parse_ring(ring_name)
    with trust_client(registry, registry_mtls, data_dir, timeout) as client:
        state = client.grant_ring(agent_did, value, reason)
    document = MessageToDict(state, preserving_proto_field_name=True,
                             always_print_fields_with_no_presence=True)
    if as_json:
        emit_json(document)
        return
    note(
        f"{agent_did}: granted ring {state.granted_ring}, effective ring {state.effective_ring}"
    )
    if state.effective_ring != state.granted_ring:
        note("(the trust tier or a pending promotion holds the effective ring; "
             "see `mesh trust report`)")
