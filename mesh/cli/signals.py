"""``mesh signals report``: send trust signals about an agent (reporter credential)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import click

from mesh.cli._output import emit_json, note
from mesh.cli._trust import credentials_option, trust_client, trust_options
from mesh.client.trust import SEVERITIES, ViolationReport
from mesh.errors import MeshError

_FRACTION = click.FloatRange(0.0, 1.0)


def _parse_violation(text: str) -> ViolationReport:
    severity, sep, reason = text.partition(":")
    if not sep or severity.strip().lower() not in SEVERITIES or not reason.strip():
        raise MeshError(
            f"invalid --violation {text!r}",
            hint="write SEVERITY:REASON, e.g. --violation 'high:wrote outside its sandbox' "
            f"(severities: {', '.join(SEVERITIES)})",
        )
    return ViolationReport(severity.strip().lower(), reason.strip())


@click.group("signals")
def signals() -> None:
    """Trust signals: what reporters (SRE systems, gateways) observe about agents."""


@signals.command("report")
@click.argument("agent_did")
@click.option("--success-rate", type=_FRACTION, help="Fraction of operations that succeeded.")
@click.option("--error-budget", type=_FRACTION, help="Fraction of the SLO error budget left.")
@click.option("--audit-completeness", type=_FRACTION,
              help="Fraction of actions that reached the audit log.")
@click.option("--violation", "violations", multiple=True, metavar="SEVERITY:REASON",
              help="A policy violation (repeatable).")
@click.option("--observed-at", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]),
              help="When the values were observed (UTC unless an offset is given); default now.")
@click.option("--report-id", help="Idempotency key (retrying with the same id is safe); "
              "default: a random one.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@credentials_option("reporter", required=True)
@trust_options
def report(
    agent_did: str,
    success_rate: float | None,
    error_budget: float | None,
    audit_completeness: float | None,
    violations: tuple[str, ...],
    observed_at: datetime | None,
    report_id: str | None,
    as_json: bool,
    credentials: Path,
    registry: tuple[str, ...],
    registry_mtls: tuple[str, ...],
    data_dir: Path,
    timeout: float,
) -> None:
    """Report signals about AGENT_DID."""
    parsed = [_parse_violation(v) for v in violations]
    if success_rate is None and error_budget is None and audit_completeness is None and not parsed:
        raise MeshError(
            "nothing to report",
            hint="give --success-rate, --error-budget, --audit-completeness or --violation",
        )
    at = observed_at
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    rid = report_id or uuid.uuid4().hex
    with trust_client(registry, registry_mtls, data_dir, timeout, credentials, "reporter") as c:
        duplicate = c.report_signals(
            agent_did,
            report_id=rid,
            success_rate=success_rate,
            error_budget_remaining=error_budget,
            audit_log_completeness=audit_completeness,
            violations=parsed,
            observed_at=at,
        )
    if as_json:
        emit_json({"report_id": rid, "agent_did": agent_did, "duplicate": duplicate})
        return
    note(f"report {rid} {'was already recorded' if duplicate else 'recorded'} for {agent_did}")
