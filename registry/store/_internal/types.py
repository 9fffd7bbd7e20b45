"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from registry.store.errors import InvalidArgument


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always a timezone-aware UTC ``datetime`` in Python.

    PostgreSQL stores ``timestamptz``; SQLite stores text in SQLAlchemy's fixed
    ``YYYY-MM-DD HH:MM:SS.ffffff`` layout (always UTC, no offset), so text order
    equals time order and comparisons such as ``expires_at > now`` work there too.
    A naive ``datetime`` is refused: its meaning would depend on the host clock.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise InvalidArgument(
                f"timestamp {value!r} has no time zone",
                hint="pass timezone-aware datetimes, e.g. datetime.now(UTC)",
            )
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def json_type() -> TypeEngine[Any]:
    """JSON everywhere; JSONB on PostgreSQL (indexable, and what distributed
    PostgreSQL-compatible engines implement)."""
    return JSON().with_variant(JSONB(), "postgresql")



# -- values in the driver's form ------------------------------------------------
#
# The bulk statements of the hot write paths run on the driver directly (see
# ``_internal.bulk``): SQLAlchemy's per-row bind processing costs more there
# than the database's own work. Their values are converted here to exactly
# what the bind processors of the column types above hand the driver (a test
# compares them), and a value shared by many rows is converted once.


class DriverForm(ABC):
    """How one back end's driver takes and gives :class:`UTCDateTime` and
    :func:`json_type` values, and how its SQL spells a positional parameter."""

    #: The driver's positional parameter marker.
    placeholder: str

    @abstractmethod
    def time(self, value: datetime) -> Any:
        """An aware ``datetime`` as the driver stores it; a naive one is refused."""

    @abstractmethod
    def json(self, document: Any) -> Any:
        """A plain JSON value (already checked, see ``checks.json_value``) as stored."""

    @abstractmethod
    def read_time(self, value: Any) -> datetime:
        """A non-null :class:`UTCDateTime` column as the driver returns it, as an
        aware UTC datetime."""


def _naive(value: Any) -> InvalidArgument:
    return InvalidArgument(
        f"timestamp {value!r} has no time zone",
        hint="pass timezone-aware datetimes, e.g. datetime.now(UTC)",
    )


class _SQLiteForm(DriverForm):
    """pysqlite: UTC text in SQLAlchemy's ``YYYY-MM-DD HH:MM:SS.ffffff`` layout
    (what ``UTCDateTime`` and SQLite's DATETIME store), JSON as ``json.dumps`` text."""

    placeholder = "?"

    #: Texts remembered (then forgotten all at once): rows written together mostly
    #: carry the same few instants (the group's ``Unit.now``; SVID validities and
    #: challenge expiries, whole seconds).
    _REMEMBERED = 4096

    def __init__(self) -> None:
        # Plain dict operations only (atomic under the GIL): threads may share it.
        self._texts: dict[datetime, str] = {}

    def time(self, value: datetime) -> str:
        # Equal aware datetimes are the same instant, so they have the same UTC text.
        text = self._texts.get(value) if type(value) is datetime else None
        if text is not None:
            return text
        if not isinstance(value, datetime) or value.utcoffset() is None:
            raise _naive(value)
        # "YYYY-MM-DD HH:MM:SS.ffffff+00:00" without its offset.
        text = value.astimezone(UTC).isoformat(" ", "microseconds")[:-6]
        if len(self._texts) >= self._REMEMBERED:
            self._texts.clear()
        self._texts[value] = text
        return text

    def json(self, document: Any) -> str:
        return json.dumps(document)

    def read_time(self, value: Any) -> datetime:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)


class _PostgresForm(DriverForm):
    """psycopg 3: aware datetimes (``timestamptz``), JSON wrapped as ``Jsonb``."""

    placeholder = "%s"

    def __init__(self) -> None:
        from psycopg.types.json import Jsonb

        self._jsonb = Jsonb

    def time(self, value: datetime) -> datetime:
        if not isinstance(value, datetime) or value.utcoffset() is None:
            raise _naive(value)
        return value if value.tzinfo is UTC else value.astimezone(UTC)

    def json(self, document: Any) -> Any:
        return self._jsonb(document)

    def read_time(self, value: Any) -> datetime:
        return value if value.tzinfo is UTC else value.astimezone(UTC)


_FORMS: dict[str, DriverForm] = {}


def driver_form(dialect: str) -> DriverForm:
    """The :class:`DriverForm` of back end ``dialect`` ("sqlite" or "postgresql")."""
    form = _FORMS.get(dialect)
    if form is None:
        if dialect == "sqlite":
            form = _SQLiteForm()
        elif dialect == "postgresql":
            form = _PostgresForm()
        else:
            raise ValueError(f"no driver form for dialect {dialect!r}")
        form = _FORMS.setdefault(dialect, form)
    return form
