"""The ``mesh`` command line.

Agent-side and operator command groups live in this package, one module per
group. Server-side commands (``serve``, ``db``, ``audit``, ``ca``) are
contributed by the registry through the ``trustmesh.cli`` entry-point group,
so this package never imports the server.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

import click

from mesh.errors import MeshError

# One line per command group: (module under mesh.cli, attribute holding the click command).
_GROUPS: tuple[tuple[str, str], ...] = (
    ("key", "key"),
    ("message", "message"),
    ("register", "register"),
    ("token", "token"),
    ("agent", "agent"),
    ("bundle", "bundle"),
    ("jwt_svid", "jwt_svid"),
    ("signals", "signals"),
    ("trust", "trust"),
    ("ring", "ring"),
    ("rotate", "rotate_credentials"),
    ("ca", "ca"),
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="trustmesh")
def cli() -> None:
    """trustmesh: identities, SVIDs, signed messages and trust for AI agents."""


def _load_groups() -> None:
    for module_name, attr in _GROUPS:
        try:
            module = importlib.import_module(f"mesh.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"mesh.cli.{module_name}":
                raise
            continue
        cli.add_command(getattr(module, attr))
    for ep in entry_points(group="trustmesh.cli"):
        try:
            commands = ep.load()
        except ModuleNotFoundError:
            # The registry's server extras are not installed: its commands are simply absent.
            continue
        for command in commands():
            cli.add_command(command)


def main() -> None:
    _load_groups()
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        raise SystemExit(130) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except MeshError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
