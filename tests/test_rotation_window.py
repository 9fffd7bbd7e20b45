"""Cron-style rotation windows (APScheduler's crontab parser), pure and clock-free."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from mesh.errors import MeshError
from mesh.rotation import RotationSchedule
from mesh.rotation.schedule import rotation_due_at

MADE = datetime(2026, 10, 29, 12, 0, tzinfo=UTC)  # a Thursday


def test_without_a_window_the_key_rotates_when_due() -> None:
    schedule = RotationSchedule(period=timedelta(days=30), jitter=timedelta(0))
    assert rotation_due_at(MADE, schedule, random.Random(1)) == MADE + timedelta(days=30)


def test_a_due_key_waits_for_the_next_window() -> None:
    # Due on Saturday 2026-11-28 12:00; the window is weekdays 03:00-03:59 UTC.
    schedule = RotationSchedule(
        period=timedelta(days=30), jitter=timedelta(0), window="0 3 * * 1-5"
    )
    at = rotation_due_at(MADE, schedule, random.Random(1))
    assert datetime(2026, 11, 30, 3, 0, tzinfo=UTC) <= at < datetime(2026, 11, 30, 3, 1, tzinfo=UTC)
    assert at.weekday() == 0


def test_never_earlier_than_due_and_spread_within_the_window_minute() -> None:
    schedule = RotationSchedule(
        period=timedelta(days=30), jitter=timedelta(hours=6), window="* * * * *"
    )
    times = {rotation_due_at(MADE, schedule, random.Random(seed)) for seed in range(20)}
    assert all(t >= MADE + timedelta(days=30) - timedelta(hours=6) for t in times)
    assert len(times) == 20


@pytest.mark.parametrize("expression", ["", "every day", "61 * * * *", "* * * *"])
def test_a_bad_window_is_refused_when_configured(expression: str) -> None:
    with pytest.raises(MeshError, match="crontab"):
        RotationSchedule(window=expression)


@pytest.mark.parametrize(
    ("field", "names"),
    [
        ("1-5", "mon,tue,wed,thu,fri"),
        ("0", "sun"),
        ("7", "sun"),
        ("sat,sun", "sun,sat"),
        ("*/2", "sun,tue,thu,sat"),
    ],
)
def test_crontab_day_numbers_follow_crontab_not_apscheduler(field: str, names: str) -> None:
    from mesh.rotation.schedule import _crontab_days

    assert _crontab_days(field) == names
