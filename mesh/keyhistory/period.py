"""What a key history says about one key: when it was valid, and its status at a time."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class KeyStatus(enum.Enum):
    """The status of a key id at an instant (see :meth:`KeyHistory.status_at`)."""

    CURRENT = "current"
    """The key has not been rotated, and the instant is not before it was introduced."""
    ROTATED_IN_GRACE = "rotated_in_grace"
    """The key has been rotated; the instant is no later than rotation time + grace."""
    ROTATED = "rotated"
    """The key has been rotated and the instant is past rotation time + grace."""
    UNKNOWN = "unknown"
    """The history has no such key, or the instant is before the key was introduced."""


@dataclass(frozen=True, slots=True)
class KeyPeriod:
    """One key's tenure in a history: valid from ``valid_from`` until ``rotated_at`` (exclusive)."""

    index: int
    kid: str
    public_key: bytes
    valid_from: datetime
    rotated_at: datetime | None

    def covers(self, at: datetime) -> bool:
        """True when ``at`` lies in ``[valid_from, rotated_at)``."""
        return self.valid_from <= at and (self.rotated_at is None or at < self.rotated_at)

    def __repr__(self) -> str:
        return (
            f"KeyPeriod(index={self.index}, kid={self.kid!r}, valid_from={self.valid_from!r}, "
            f"rotated_at={self.rotated_at!r})"
        )
