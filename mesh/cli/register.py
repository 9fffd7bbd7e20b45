"""``mesh register``: register an agent at boot, or re-register it after a restart.

First boot (makes the Ed25519 identity key in DIR)::

    mesh register --registry 127.0.0.1:8443 --bundle .mesh/bundle.pem --token T --out DIR

Later boots (authenticates with the key already in DIR; no token)::

    mesh register --out DIR

Prints the DID on stdout; ``--json`` prints the registration as one JSON document.
"""

from __future__ import annotations

from pathlib import Path

import click

from mesh.cli._options import (
    addresses,
    mtls_option,
    passphrase_option,
    read_passphrase,
    registry_option,
    timeout_option,
)
from mesh.cli._output import emit_json, note, when
from mesh.client.agent import AgentClient
from mesh.client.channel import DEFAULT_REGISTRY
from mesh.errors import MeshError


@click.command("register")
@registry_option(default=None)
@click.option(
    "--bundle",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CA certificates to trust (the registry's bundle.pem). "
    "[default: DIR/bundle.0.pem from an earlier registration]",
)
@click.option(
    "--token",
    envvar="MESH_JOIN_TOKEN",
    help="One-time join token (`mesh token create`). Omit to re-register with the existing key.",
)
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read the join token from this file instead (keeps it out of the process list).",
)
@click.option(
    "--out",
    "--agent-dir",
    "out",
    required=True,
    envvar="MESH_AGENT_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Agent directory: the identity key is made here if absent; the SVID is written here.",
)
@click.option(
    "--trust-domain",
    help="Refuse a registry that is not in this trust domain. "
    "[default: the one in DIR/agent.json, if any]",
)
@click.option(
    "--meta",
    "metadata",
    multiple=True,
    metavar="KEY=VALUE",
    help="Label to record with the agent (first registration only); repeatable.",
)
@passphrase_option
@mtls_option
@timeout_option
@click.option("--json", "as_json", is_flag=True, help="Print the registration as JSON.")
def register(
    registry: tuple[str, ...],
    bundle: Path | None,
    token: str | None,
    token_file: Path | None,
    out: Path,
    trust_domain: str | None,
    metadata: tuple[str, ...],
    passphrase_file: Path | None,
    registry_mtls: tuple[str, ...],
    timeout: float,
    as_json: bool,
) -> None:
    """Register the agent in OUT with the registry and write its X.509-SVID.

    Writes identity.key (first time), svid.0.pem, svid.0.key, bundle.0.pem and agent.json.
    """
    if token and token_file:
        raise click.UsageError("give --token or --token-file, not both")
    if token_file:
        token = token_file.read_text().strip()
        if not token:
            raise MeshError(f"the token file {token_file} is empty")
    labels = _labels(metadata)
    has_agent_json = (out / "agent.json").exists()
    registry_list: list[str] | None = addresses(registry, None) or (
        None if has_agent_json else addresses((), DEFAULT_REGISTRY)
    )
    with AgentClient(
        registry_list,
        out,
        bundle,
        mtls_registry=addresses(registry_mtls, None) or None,
        passphrase=read_passphrase(passphrase_file),
        trust_domain=trust_domain,
        timeout=timeout,
    ) as client:
        result = client.register(token or None, labels or None)
    if as_json:
        emit_json(result.to_dict())
        return
    click.echo(result.did)
    how = "registered" if result.created else "re-registered"
    note(
        f"{how} {result.spiffe_id}; X.509-SVID valid until {when(result.not_after)}; "
        f"wrote {out}/svid.0.pem, svid.0.key, bundle.0.pem, agent.json"
    )


def _labels(items: tuple[str, ...]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--meta")
        labels[name] = value
    return labels
