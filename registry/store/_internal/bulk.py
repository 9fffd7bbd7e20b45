"""Many rows in one statement, run on the driver.

The group commit writes dozens of rows per table in one statement. Through
SQLAlchemy Core each row's values pass its bind processors and its parameter
dictionary is rebuilt, which costs more than the database's own work; here
the SQL is spelled once per back end and row count, the values arrive
already in the driver's form (``types.DriverForm``), and the statement goes
to the driver as is (``Unit.driver_execute``: the same connection and
transaction, errors translated as for every other statement).

One multi-row ``VALUES`` list (not ``executemany``) on both back ends: one
statement and, on PostgreSQL, one round trip, with ``RETURNING`` where the
caller needs to know which rows went in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

from registry.store._internal.types import driver_form
from registry.store._internal.unit import Unit

#: Most parameters in one statement: SQLite's default limit (since 3.32; RETURNING
#: needs 3.35 anyway), below PostgreSQL's 65,535. Larger batches are split.
MAX_PARAMETERS = 32_766

_PREPARERS = {
    "sqlite": sqlite.dialect().identifier_preparer,
    "postgresql": postgresql.dialect().identifier_preparer,
}


def quoted(dialect: str, name: str) -> str:
    """``name`` as an identifier in ``dialect``'s SQL (quoted only where it must be)."""
    return str(_PREPARERS[dialect].quote(name))


def values_list(dialect: str, width: int, rows: int) -> str:
    """``(?, ?), (?, ?)``: ``rows`` groups of ``width`` parameters in ``dialect``'s style."""
    mark = driver_form(dialect).placeholder
    group = "(" + ", ".join([mark] * width) + ")"
    return ", ".join([group] * rows)


class MultiRowInsert:
    """``INSERT INTO table (columns) VALUES (...), (...) [conflict] [RETURNING ...]``.

    ``rows`` are tuples in ``columns`` order, each value in the driver's form.
    ``on_conflict`` is the conflict clause (e.g. ``ON CONFLICT DO NOTHING``;
    the same words on both back ends); ``returning`` names the columns whose
    values come back, one tuple per inserted row.
    """

    def __init__(
        self,
        table: Table,
        columns: Sequence[str],
        *,
        on_conflict: str = "",
        returning: Sequence[str] = (),
    ) -> None:
        unknown = [c for c in (*columns, *returning) if c not in table.c]
        if unknown:
            raise ValueError(f"{table.name} has no column(s) {', '.join(unknown)}")
        self._table = table.name
        self._columns = tuple(columns)
        self._on_conflict = on_conflict
        self._returning = tuple(returning)
        self._sql: dict[tuple[str, int], str] = {}

    @property
    def width(self) -> int:
        return len(self._columns)

    def sql(self, dialect: str, rows: int) -> str:
        key = (dialect, rows)
        text = self._sql.get(key)
        if text is None:
            def q(name: str) -> str:
                return quoted(dialect, name)

            # Identifiers from the schema and placeholders only: no value is in the SQL.
            columns = ", ".join(q(c) for c in self._columns)
            text = (
                f"INSERT INTO {q(self._table)} ({columns}) "  # noqa: S608
                f"VALUES {values_list(dialect, self.width, rows)}"
            )
            if self._on_conflict:
                text += " " + self._on_conflict
            if self._returning:
                text += " RETURNING " + ", ".join(q(c) for c in self._returning)
            # Row counts vary with the load; the cache stays bounded by MAX_PARAMETERS.
            self._sql[key] = text
        return text

    def execute(self, unit: Unit, rows: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Insert ``rows`` (in as few statements as the parameter limit allows); the
        returned rows, if ``returning`` names columns."""
        returned: list[Any] = []
        step = max(1, MAX_PARAMETERS // self.width)
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            params = [value for row in chunk for value in row]
            returned += unit.driver_execute(self.sql(unit.dialect, len(chunk)), params)
        return returned

