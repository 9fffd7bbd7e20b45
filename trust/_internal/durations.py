"""Durations in a policy: ``90s``, ``10m``, ``24h``, ``7d``, ``1w``, ``1h30m``, or seconds."""

from __future__ import annotations

import math
import re
from datetime import timedelta

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")
DURATION_FORMS = "a number of seconds or a string like '90s', '10m', '24h', '7d', '1w', '1h30m'"


def parse_duration(text: str) -> timedelta | None:
    """Parse a duration string; ``None`` when it is not one (the caller words the error)."""
    compact = text.strip().replace(" ", "")
    if not _WHOLE.fullmatch(compact):
        return None
    seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(compact))
    if not math.isfinite(seconds) or seconds > 10 * 365 * 86400:
        return None
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling of ``value`` in the units above (``parse_duration`` inverse)."""
    total = value.total_seconds()
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if total >= size and total % size == 0:
            return f"{int(total // size)}{unit}"
    if total == 0:
        return "0s"
    return f"{total:g}s"


def human(seconds: float) -> str:
    """A short human rendering of an age for explanations: ``45s``, ``12m``, ``3.5h``, ``9.2d``."""
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
