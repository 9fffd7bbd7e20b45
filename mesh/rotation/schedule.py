"""When an agent rotates its identity key: pure functions of times (tested without waiting)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

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

    ``window`` is an optional crontab expression (five fields, UTC, e.g.
    ``"0 2-4 * * 1-5"`` for weekday nights): a due key then rotates at the
    first time the window allows, never earlier than its due time.
    """

    period: timedelta = DEFAULT_PERIOD
    jitter: timedelta = DEFAULT_JITTER
    window: str | None = None

    def __post_init__(self) -> None:
        if self.window is not None:
            _window_trigger(self.window)  # a bad expression fails here, not at rotation time
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
    due = valid_from + schedule.period - schedule.jitter * rng.random()
    if schedule.window is None:
        return due
    fire: datetime | None = _window_trigger(schedule.window).get_next_fire_time(None, due)
    if fire is None:
        raise MeshError(f"the rotation window {schedule.window!r} never opens after {due}")
    # Keep the jitter inside the window's minute so a fleet does not rotate in one second.
    return max(due, fire + timedelta(seconds=59 * rng.random()))


_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _window_trigger(expression: str) -> Any:
    # APScheduler's cron trigger; imported only when a window is configured.
    from apscheduler.triggers.cron import CronTrigger

    fields = expression.split()
    try:
        if len(fields) != 5:
            raise ValueError(f"expected 5 fields, got {len(fields)}")
        minute, hour, day, month, day_of_week = fields
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=_crontab_days(day_of_week),
            timezone=UTC,
        )
    except (ValueError, TypeError) as exc:
        raise MeshError(
            f"the rotation window {expression!r} is not a crontab expression: {exc}",
            hint='five fields: minute hour day-of-month month day-of-week, e.g. "0 3 * * 1-5"',
        ) from None


def _crontab_days(field: str) -> str:
    """Crontab's day-of-week (0 or 7 = Sunday) as day names, which APScheduler reads
    unambiguously (its own numbers start at Monday = 0)."""
    if field == "*":
        return "*"
    days: list[int] = []
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            a, b = span.split("-", 1)
            first, last = _day_number(a), _day_number(b)
        else:
            first = last = _day_number(span)
        if step < 1 or first > last:
            raise ValueError(f"bad day-of-week range {part!r}")
        days.extend(range(first, last + 1, step))
    return ",".join(_DAY_NAMES[d % 7] for d in sorted(set(days)))


def _day_number(text: str) -> int:
    name = text.strip().lower()[:3]
    if name in _DAY_NAMES:
        return _DAY_NAMES.index(name)
    number = int(text)
    if not 0 <= number <= 7:
        raise ValueError(f"day-of-week {text!r} is outside 0-7")
    return number


def next_rotation_time(history: KeyHistory, schedule: RotationSchedule, seed: int = 0) -> datetime:
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
