"""When an agent rotates its identity key: pure functions of times (tested without waiting)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from mesh.errors import MeshError
from mesh.keyhistory import KeyHistory

DEFAULT_PERIOD = timedelta(days=30)
DEFAULT_JITTER = timedelta(hours=6)
# The registry's refusals that a rotation cures start with this (FAILED_PRECONDITION).
ROTATION_REQUIRED = "key rotation required"


@dataclass(frozen=True)
class RotationSchedule:
    """Rotate when the current key is ``period`` old, up to ``jitter`` earlier (random).

    The jitter is drawn once per key (from the key's kid and a per-process
    seed), so asking again does not move the time, while two agents whose keys
    were made in the same second rotate at different times.
    """

    period: timedelta = DEFAULT_PERIOD
    jitter: timedelta = DEFAULT_JITTER

    def __post_init__(self) -> None:
        if self.period <= timedelta(0):
            raise MeshError(
                f"the rotation period must be positive, got {self.period}",
                hint="e.g. RotationSchedule(period=timedelta(days=30))",
            )
        if not timedelta(0) <= self.jitter < self.period:
            raise MeshError(
                f"the rotation jitter ({self.jitter}) must be >= 0 and below the period "
                f"({self.period})",
                hint="a few hours spreads a fleet; the default is 6 h",
            )


def rotation_due_at(
    valid_from: datetime, schedule: RotationSchedule, rng: random.Random
) -> datetime:
    """When a key current since ``valid_from`` is due for rotation."""
    return valid_from + schedule.period - schedule.jitter * rng.random()


def next_rotation_time(
    history: KeyHistory, schedule: RotationSchedule, seed: int = 0
) -> datetime:
    """The due time of ``history``'s current key; stable for one key and ``seed``."""
    current = history.current
    rng = random.Random(f"{seed}:{current.kid}")
    return rotation_due_at(current.valid_from, schedule, rng)


def key_age(history: KeyHistory, now: datetime) -> timedelta:
    """How long the current key has been current (0 if ``now`` is before that)."""
    return max(timedelta(0), now - history.current.valid_from)


def next_whole_second(now: datetime) -> datetime:
    """The first whole second strictly after ``now``.

    Message issued-at has whole-second resolution, and verifiers compare it
    with key times cut to the second. A rotation at a whole second ``T`` after
    every message the old key signed (issued-at < T) and before any message
    the new key signs (issued-at >= T) keeps every message unambiguous.
    """
    seconds = math.floor(now.timestamp()) + 1
    return datetime.fromtimestamp(seconds, now.tzinfo)


__all__ = [
    "DEFAULT_JITTER",
    "DEFAULT_PERIOD",
    "ROTATION_REQUIRED",
    "RotationSchedule",
    "key_age",
    "next_rotation_time",
    "next_whole_second",
    "rotation_due_at",
]
