"""``mesh rotate-credentials``: rotate agents' identity keys, one or the whole fleet.

* ``mesh rotate-credentials DIR`` — an agent directory on this machine: a new
  key, the history signed by both, the registry told (the agent's SVID, or
  the history's signatures, authenticate it). The DID stays.
* ``mesh rotate-credentials DID`` — a running agent, through the registry
  (operator credential): the agent gets a rotation request on its event
  stream and rotates itself; this waits for it.
* ``mesh rotate-credentials --all [--older-than 30d]`` — every active agent
  (whose key is older than the cutoff): marked due and asked, one event each;
  a progress bar (plain lines without a terminal), then a table of rotated /
  pending / failed.

Exit status: 0 when every agent asked has rotated (or none was due), 1 when
any failed or is still pending when ``--wait`` runs out. Made for cron.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path

import click

from mesh.cli._options import (
    duration_callback,
    operator_client,
    operator_options,
    passphrase_option,
    read_passphrase,
)
from mesh.cli._output import emit_json, note, table, when
from mesh.client.agent import AgentClient
from mesh.client.operator import OperatorClient
from mesh.client.rotation_types import RotationCampaign, RotationStatus
from mesh.errors import MeshError

POLL_SECONDS = 1.0


@click.command("rotate-credentials")
@click.argument("agent", required=False)
@click.option("--all", "all_", is_flag=True, help="Every active agent (see --older-than).")
@click.option(
    "--older-than",
    callback=duration_callback,
    help="With --all: only agents whose key is at least this old (e.g. 30d).",
)
@click.option(
    "--wait",
    "wait_for",
    default="5m",
    show_default=True,
    callback=duration_callback,
    help="How long to wait for running agents to rotate (DID or --all).",
)
@click.option("--reason", default="", help="Recorded with the request and in the audit trail.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
@passphrase_option
@operator_options
def rotate_credentials(
    agent: str | None,
    all_: bool,
    older_than: timedelta | None,
    wait_for: timedelta,
    reason: str,
    as_json: bool,
    passphrase_file: Path | None,
    registry: tuple[str, ...],
    registry_mtls: tuple[str, ...],
    data_dir: Path,
    timeout: float,
) -> None:
    """Rotate identity keys: an agent directory, a running agent (DID), or --all."""
    if all_ == (agent is not None):
        raise click.UsageError("give an agent directory or DID, or --all (not both)")
    if older_than is not None and not all_:
        raise click.UsageError("--older-than goes with --all")
    if agent is not None and not agent.startswith("did:"):
        _rotate_local(Path(agent), list(registry) or None, read_passphrase(passphrase_file),
                      as_json)
        return
    with operator_client(registry, registry_mtls, data_dir, timeout) as client:
        if all_:
            campaign = client.request_rotation_all(older_than, reason)
        else:
            assert agent is not None
            campaign = client.request_rotation(agent, reason)
        if campaign.requested == 0:
            if as_json:
                emit_json({"campaign_id": "", "requested": 0, "rotated": 0, "pending": 0,
                           "failed": 0, "agents": []})
            else:
                click.echo("no agent is due for rotation")
            return
        status = _follow(client, campaign, wait_for, quiet=as_json)
    if as_json:
        emit_json(status.to_dict())
    else:
        _summary(status)
    if status.rotated != status.requested:
        raise SystemExit(1)


def _rotate_local(
    directory: Path, registry: list[str] | None, passphrase: bytes | None, as_json: bool
) -> None:
    if not directory.is_dir():
        raise MeshError(
            f"{directory} is neither an agent directory nor a DID",
            hint="give the directory of `mesh register --out DIR`, or did:mesh:... of a "
            "running agent",
        )
    with AgentClient(registry, directory, passphrase=passphrase) as client:
        result = client.rotate_key()
    if as_json:
        emit_json(result.to_dict())
        return
    click.echo(f"rotated {result.did}: {result.previous_kid} -> {result.kid} at {when(result.at)}")


def _follow(
    client: OperatorClient, campaign: RotationCampaign, wait_for: timedelta, *, quiet: bool
) -> RotationStatus:
    """Poll the campaign until nothing is pending or ``wait_for`` runs out."""
    deadline = time.monotonic() + wait_for.total_seconds()
    status = client.rotation_status(campaign.id)
    interactive = sys.stderr.isatty() and not quiet
    if not quiet:
        note(f"asked {campaign.requested} agent(s) to rotate (campaign {campaign.id})")
    if interactive:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        with Progress(
            TextColumn("rotating"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            transient=False,
        ) as progress:
            task = progress.add_task("rotate", total=status.requested, detail="")
            while True:
                progress.update(
                    task,
                    completed=status.rotated + status.failed,
                    detail=f"failed {status.failed}, pending {status.pending}",
                )
                if status.done or time.monotonic() >= deadline:
                    break
                time.sleep(POLL_SECONDS)
                status = client.rotation_status(campaign.id)
    else:
        last = None
        while True:
            line = (f"rotated {status.rotated}/{status.requested} failed {status.failed} "
                    f"pending {status.pending}")
            if line != last and not quiet:
                note(line)
                last = line
            if status.done or time.monotonic() >= deadline:
                break
            time.sleep(POLL_SECONDS)
            status = client.rotation_status(campaign.id)
    return client.rotation_status(campaign.id, include_agents=True)


def _summary(status: RotationStatus) -> None:
    table(
        ("ROTATED", "PENDING", "FAILED", "OF"),
        [(str(status.rotated), str(status.pending), str(status.failed), str(status.requested))],
        title=f"campaign {status.campaign_id}",
    )
    unfinished = [a for a in status.agents if a.state.value != "rotated"]
    if unfinished:
        table(
            ("DID", "STATE", "KEY", "DETAIL"),
            ((a.did, a.state.value, a.current_kid, a.detail or "-") for a in unfinished[:200]),
        )
        if len(unfinished) > 200:
            note(f"... and {len(unfinished) - 200} more (use --json for all)")
    if status.rotated == status.requested:
        click.echo(f"all {status.requested} agent(s) rotated")
    else:
        click.echo(
            f"not all rotated: {status.pending} pending, {status.failed} failed "
            f"(of {status.requested})"
        )
