"""Output for the registry commands: rich tables for people, one JSON document for scripts.

Tables and notes for people go to stdout/stderr as a terminal would show
them; ``--json`` prints exactly one JSON document on stdout and nothing else
there, so ``mesh ... --json | jq`` always works.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table


def emit_json(document: Any) -> None:
    """Print one JSON document on stdout."""
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


def note(message: str) -> None:
    """A line for people, on stderr (never mixed into what scripts read)."""
    click.echo(message, err=True)


def _console() -> Console:
    # Without a terminal rich would wrap at 80 columns; DIDs and SPIFFE IDs are long.
    return Console(width=None if sys.stdout.isatty() else 240, highlight=False)


def table(
    columns: Sequence[str], rows: Iterable[Sequence[str]], *, title: str | None = None
) -> None:
    out = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        out.add_column(column, overflow="fold")
    count = 0
    for row in rows:
        out.add_row(*row)
        count += 1
    if count == 0:
        note("(none)")
        return
    _console().print(out)


def fields(pairs: Sequence[tuple[str, str]]) -> None:
    """A two-column key/value table for one object."""
    out = Table(show_header=False, box=None, pad_edge=False)
    out.add_column(style="bold")
    out.add_column(overflow="fold")
    for name, value in pairs:
        out.add_row(name, value)
    _console().print(out)


def when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d %H:%M:%SZ")
