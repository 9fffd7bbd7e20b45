"""``mesh trust``: trust reports, the live event stream, and recompute on demand."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]

from mesh.cli._output import emit_json, fields, note, table, when
from mesh.cli._trust import credentials_option, trust_client, trust_options
from mesh.client.operator import operator_tls
from mesh.client.trust import TrustClient, TrustReport
from mesh.v1 import events_pb2

RING_NAMES = ("kernel", "system", "user", "sandbox")
_TYPES = [
    name.removeprefix("EVENT_TYPE_").lower()
    for name in events_pb2.EventType.keys()
    if name != "EVENT_TYPE_UNSPECIFIED"
]


def _ring(value: int) -> str:
    return f"{value} ({RING_NAMES[value]})" if 0 <= value < len(RING_NAMES) else str(value)


@click.group("trust")
def trust() -> None:
    """Trust scores, tiers and rings: reports, the event stream, recompute."""


@trust.command("report")
@click.argument("agent_did", required=False)
@click.option("--history", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="History points to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@trust_options
def report(
    agent_did: str | None, history: int, as_json: bool, registry: tuple[str, ...],
    registry_mtls: tuple[str, ...], data_dir: Path, timeout: float,
) -> None:
    """Score, tier, ring, factor breakdown and history of AGENT_DID (or a table of
    every agent's score when no agent is given)."""
    with trust_client(registry, registry_mtls, data_dir, timeout) as client:
        if agent_did:
            found = client.trust_report(agent_did, history=history)
            if as_json:
                emit_json(found.to_dict())
            else:
                _show(found)
            return
        reports = _all_reports(client, registry, registry_mtls, data_dir, timeout)
    if as_json:
        emit_json([r.to_dict() for r in reports])
        return
    table(
        ("DID", "STATUS", "SCORE", "TIER", "RING", "GRANTED", "COMPUTED"),
        (
            (
                r.did, r.status, "-" if r.score is None else str(r.score), r.tier or "-",
                _ring(r.effective_ring), str(r.granted_ring), when(r.computed_at),
            )
            for r in reports
        ),
    )


def _all_reports(
    client: TrustClient, registry: tuple[str, ...], registry_mtls: tuple[str, ...],
    data_dir: Path, timeout: float,
) -> list[TrustReport]:
    from mesh.cli._options import operator_client

    with operator_client(registry, registry_mtls, data_dir, timeout) as ops:
        agents = ops.list_agents()
    return [client.trust_report(a.did, history=1) for a in agents]


def _show(r: TrustReport) -> None:
    fields(
        [
            ("did", r.did),
            ("status", r.status),
            ("score", "not computed yet" if r.score is None else f"{r.score} / 1000"),
            ("tier", r.tier or "-"),
            ("effective ring", _ring(r.effective_ring)),
            ("granted ring", _ring(r.granted_ring)),
            ("why this ring", r.ring_reason or "-"),
            ("computed", when(r.computed_at)),
            ("next due", when(r.next_due_at)),
            (
                "pending promotion",
                "-" if r.pending_ring is None
                else f"to {_ring(r.pending_ring)} since {when(r.pending_since)}",
            ),
        ]
    )
    if r.factors:
        table(
            ("FACTOR", "VALUE", "WEIGHT", "POINTS", "WHY"),
            (
                (f.name, f"{f.value:.3f}", f"{f.weight:.3f}", f"{f.points:.1f}", f.why)
                for f in sorted(r.factors, key=lambda f: f.weight * (1 - f.value), reverse=True)
            ),
            title="breakdown (largest loss first)",
        )
    if r.history:
        table(
            ("AT", "SCORE", "TIER", "RING"),
            ((when(h.at), str(h.score), h.tier, _ring(h.effective_ring)) for h in r.history),
            title="history (newest first)",
        )


def item_document(item: events_pb2.WatchResponse) -> dict[str, Any]:
    """One Watch item as a flat JSON object (one line of `mesh trust watch --json`)."""
    kind = item.WhichOneof("item")
    if kind == "snapshot":
        return {"kind": "snapshot", "state": _state(item.snapshot)}
    if kind == "snapshot_done":
        return {"kind": "snapshot_done", "sequence": item.snapshot_done.sequence}
    e = item.event
    doc: dict[str, Any] = {
        "kind": "event",
        "sequence": e.sequence,
        "type": events_pb2.EventType.Name(e.type).removeprefix("EVENT_TYPE_").lower(),
        "agent_did": e.agent_did or None,
        "at": e.at.ToDatetime().isoformat() + "Z",
        "details": json.loads(e.details_json or "{}"),
    }
    if e.HasField("state"):
        doc["state"] = _state(e.state)
    return doc


def _state(state: events_pb2.AgentState) -> dict[str, Any]:
    doc: dict[str, Any] = MessageToDict(
        state, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    doc["status"] = str(doc.get("status", "")).removeprefix("AGENT_STATUS_").lower()
    if not state.has_score:
        doc["score"] = None
    doc.pop("has_score", None)
    return doc


@trust.command("watch")
@click.option("--from-seq", "from_seq", type=click.IntRange(0), default=0, show_default=True,
              help="0: a snapshot of every agent first; N: every event after N.")
@click.option("--agent", "agents", multiple=True, help="Only this agent (repeatable).")
@click.option("--type", "types", multiple=True, type=click.Choice(_TYPES),
              help="Only this event type (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@credentials_option("enforcer", required=False)
@trust_options
def watch(
    from_seq: int, agents: tuple[str, ...], types: tuple[str, ...], as_json: bool,
    credentials: Path | None, registry: tuple[str, ...], registry_mtls: tuple[str, ...],
    data_dir: Path, timeout: float,
) -> None:
    """Follow the registry's events live (Ctrl-C to stop); resumes after disconnects."""
    if credentials is None:
        operator_tls(data_dir)  # a clear error when there is no operator credential
    wire_types = [events_pb2.EventType.Value("EVENT_TYPE_" + t.upper()) for t in types]
    with trust_client(registry, registry_mtls, data_dir, timeout, credentials) as client:
        try:
            for item in client.watch(from_seq, agent_dids=agents, types=wire_types):
                doc = item_document(item)
                if as_json:
                    click.echo(json.dumps(doc, separators=(",", ":"), sort_keys=True))
                else:
                    click.echo(_line(doc))
                sys.stdout.flush()
        except KeyboardInterrupt:
            return


def _line(doc: dict[str, Any]) -> str:
    if doc["kind"] == "snapshot":
        s = doc["state"]
        return (f"snapshot  {s['did']} {s['status']} score={s['score']} tier={s['tier'] or '-'} "
                f"ring={s['effective_ring']}")
    if doc["kind"] == "snapshot_done":
        return f"snapshot complete at sequence {doc['sequence']}"
    s = doc.get("state") or {}
    extra = f" ring={s.get('effective_ring')} score={s.get('score')}" if s else ""
    return f"#{doc['sequence']} {doc['at']} {doc['type']} {doc['agent_did'] or '-'}{extra}"


@trust.command("recompute")
@click.argument("agent_dids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every agent, due or not.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@trust_options
def recompute(
    agent_dids: tuple[str, ...], everything: bool, as_json: bool, registry: tuple[str, ...],
    registry_mtls: tuple[str, ...], data_dir: Path, timeout: float,
) -> None:
    """Recompute now: the given agents, every due agent (no argument), or --all."""
    with trust_client(registry, registry_mtls, data_dir, timeout) as client:
        result = client.recompute(agent_dids, everything=everything)
    if as_json:
        emit_json(result)
        return
    note(
        f"examined {result['examined']} agents, {result['changed']} changed, "
        f"{result['events']} events (last sequence {result['last_sequence']})"
    )
