"""``mesh ca``: the registry's CA rotation (operator credential).

The registry rotates its CA on a schedule derived from the CA lifetime
(docs/rotation.md); these commands show it and let an operator drive it:

* ``mesh ca status`` — authorities (prepared / active / retired), bundle
  sequence, and the next scheduled change;
* ``mesh ca rotate`` — prepare the next CA now (published in the trust bundle
  at once); ``--activate`` makes it sign once it has been published for the
  propagation delay (``--force``: now, accepting failed handshakes with peers
  that have not refreshed their bundle yet).
"""

from __future__ import annotations

from pathlib import Path

import click

from mesh.cli._options import operator_client, operator_options
from mesh.cli._output import emit_json, note, table, when
from mesh.client.rotation_types import CAStatus


@click.group("ca")
def ca() -> None:
    """The registry's CA: status and operator-driven rotation."""


@ca.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@operator_options
def status(
    as_json: bool, registry: tuple[str, ...], registry_mtls: tuple[str, ...], data_dir: Path,
    timeout: float,
) -> None:
    """Show the CA's authorities and the next scheduled change."""
    with operator_client(registry, registry_mtls, data_dir, timeout) as client:
        result = client.ca_status()
    _print(result, as_json)


@ca.command("rotate")
@click.option("--activate", is_flag=True, help="Also make the prepared CA sign.")
@click.option(
    "--force",
    is_flag=True,
    help="Activate now, even before the propagation delay (peers may fail handshakes).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@operator_options
def rotate(
    activate: bool, force: bool, as_json: bool, registry: tuple[str, ...],
    registry_mtls: tuple[str, ...], data_dir: Path, timeout: float,
) -> None:
    """Prepare the next CA (and with --activate, switch to it)."""
    with operator_client(registry, registry_mtls, data_dir, timeout) as client:
        result = client.rotate_ca(activate=activate, force=force)
    for change in result.changes:
        note(change)
    _print(result, as_json)


def _print(result: CAStatus, as_json: bool) -> None:
    if as_json:
        emit_json(result.to_dict())
        return
    table(
        ("KIND", "ID", "STATE", "NOT BEFORE", "NOT AFTER"),
        (
            (a.kind, a.id, a.state, when(a.not_before), when(a.not_after))
            for a in result.authorities
        ),
        title=f"bundle sequence {result.sequence}",
    )
    if result.next_change_at is not None:
        click.echo(f"next: {result.next_change} at {when(result.next_change_at)}")
