"""Options shared by the registry commands: addresses, data dir, agent dir, durations."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from mesh.client.channel import DEFAULT_REGISTRY, parse_addresses
from mesh.client.operator import DEFAULT_DATA_DIR, OperatorClient
from mesh.errors import MeshError

F = TypeVar("F", bound=Callable[..., Any])

_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90``, ``90s``, ``10m``, ``2h``, ``7d``, ``1h30m`` -> timedelta."""
    value = text.strip().lower()
    if value.isdigit():
        seconds = int(value)
    else:
        pos, seconds = 0, 0
        for match in _DURATION.finditer(value):
            if match.start() != pos:
                break
            seconds += int(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(value) or not value:
            raise MeshError(
                f"invalid duration {text!r}", hint="use e.g. 90s, 10m, 2h, 7d or 1h30m"
            )
    if seconds <= 0:
        raise MeshError(f"duration {text!r} must be positive")
    return timedelta(seconds=seconds)


def duration_callback(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> timedelta | None:
    """Click callback turning a duration option into a timedelta (None when absent)."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except MeshError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def registry_option(default: str | None = DEFAULT_REGISTRY) -> Callable[[F], F]:
    helptext = "Registry address HOST:PORT; repeat (or comma-separate) for failover."
    if default:
        helptext += f" [default: {default}]"
    else:
        helptext += " [default: the address in the agent directory's agent.json]"
    return click.option(
        "--registry",
        "registry",
        multiple=True,
        envvar="MESH_REGISTRY",
        help=helptext,
    )


def mtls_option(f: F) -> F:
    return click.option(
        "--registry-mtls",
        "registry_mtls",
        multiple=True,
        envvar="MESH_REGISTRY_MTLS",
        help="The registry's mutual-TLS address HOST:PORT (calls with a client certificate). "
        "[default: the --registry port + 1]",
    )(f)


def timeout_option(f: F) -> F:
    return click.option(
        "--timeout",
        type=click.FloatRange(min=0.1),
        default=10.0,
        show_default=True,
        help="Seconds to wait for each call.",
    )(f)


def operator_options(f: F) -> F:
    """--registry, --registry-mtls, --data-dir, --timeout: what every operator command takes."""
    f = timeout_option(f)
    f = mtls_option(f)
    f = click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_DATA_DIR,
        envvar="MESH_DATA_DIR",
        show_default=True,
        help="The registry's data dir: bundle.pem and operator/operator.{pem,key} are read there.",
    )(f)
    return registry_option()(f)


def addresses(registry: tuple[str, ...], default: str | None = DEFAULT_REGISTRY) -> list[str]:
    if not registry:
        if default is None:
            return []
        return list(parse_addresses(default))
    return list(parse_addresses(list(registry)))


def operator_client(
    registry: tuple[str, ...], registry_mtls: tuple[str, ...], data_dir: Path, timeout: float
) -> OperatorClient:
    return OperatorClient.from_data_dir(
        data_dir,
        addresses(registry),
        mtls_registry=addresses(registry_mtls, None) or None,
        timeout=timeout,
    )


def agent_dir_option(required: bool = False, *names: str) -> Callable[[F], F]:
    return click.option(
        *(names or ("--agent-dir",)),
        "agent_dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="MESH_AGENT_DIR",
        required=required,
        default=None if required else Path("."),
        show_default=not required,
        help="The agent directory (identity key, svid.0.pem, svid.0.key, bundle.0.pem, "
        "agent.json).",
    )


def passphrase_option(f: F) -> F:
    return click.option(
        "--passphrase-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="File holding the identity key's passphrase (one trailing newline is ignored).",
    )(f)


def read_passphrase(path: Path | None) -> bytes | None:
    if path is None:
        return None
    data = path.read_bytes()
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        raise MeshError(f"the passphrase file {path} is empty")
    return data
