"""Building a TrustClient for the trust commands: the operator credential of a
registry data dir, or a reporter/enforcer credential directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from mesh.cli._options import addresses, operator_options
from mesh.client.operator import operator_tls
from mesh.client.trust import TrustClient, credential_tls

F = TypeVar("F", bound=Callable[..., Any])


def credentials_option(kind: str, *, required: bool) -> Callable[[F], F]:
    return click.option(
        "--credentials",
        "credentials",
        type=click.Path(file_okay=False, path_type=Path),
        envvar=f"MESH_{kind.upper()}_CREDENTIALS",
        required=required,
        help=f"A {kind} credential directory ({kind}.pem, {kind}.key, bundle.pem) from "
        f"`mesh principal create --kind {kind}`"
        + ("" if required else "; default: the operator credential of --data-dir"),
    )


def trust_options(f: F) -> F:
    return operator_options(f)


def trust_client(
    registry: tuple[str, ...],
    registry_mtls: tuple[str, ...],
    data_dir: Path,
    timeout: float,
    credentials: Path | None = None,
    kind: str = "enforcer",
) -> TrustClient:
    tls = credential_tls(credentials, kind) if credentials else operator_tls(data_dir)
    return TrustClient(
        addresses(registry),
        tls=tls,
        mtls_registry=addresses(registry_mtls, None) or None,
        timeout=timeout,
    )
