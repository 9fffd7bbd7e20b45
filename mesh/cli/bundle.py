"""``mesh bundle``: the registry's trust bundle (no credential needed to read it)."""

from __future__ import annotations

from pathlib import Path

import click

from mesh.cli._options import addresses, registry_option, timeout_option
from mesh.client.channel import RegistryChannel, TLSConfig
from mesh.client.operator import BUNDLE_FILE, DEFAULT_DATA_DIR, fetch_trust_bundle


@click.group("bundle")
def bundle() -> None:
    """Trust bundle: the CA certificates and JWT keys of the trust domain."""


@bundle.command("show")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["pem", "spiffe"]),
    default="pem",
    show_default=True,
    help="pem: X.509 authorities as PEM; spiffe: the SPIFFE bundle (JWKS) document.",
)
@click.option(
    "--bundle",
    "trust",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CA certificates to trust for the TLS connection. [default: DATA_DIR/bundle.pem]",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DATA_DIR,
    envvar="MESH_DATA_DIR",
    show_default=True,
    help="The registry's data dir (its bundle.pem is trusted unless --bundle is given).",
)
@registry_option()
@timeout_option
def show(
    fmt: str, trust: Path | None, data_dir: Path, registry: tuple[str, ...], timeout: float
) -> None:
    """Fetch the current trust bundle from the registry and print it."""
    tls = TLSConfig.from_files(trust or data_dir / BUNDLE_FILE)
    with RegistryChannel(addresses(registry), tls, timeout=timeout) as channel:
        current = fetch_trust_bundle(channel)
    if fmt == "pem":
        click.echo(current.x509_authorities_pem.decode("ascii"), nl=False)
    else:
        click.echo(current.spiffe_bundle.decode("utf-8"))
