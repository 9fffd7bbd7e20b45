"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

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
