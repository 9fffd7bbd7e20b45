"""When to renew an X.509-SVID: at half its life, with jitter; backoff after a failure.

Pure functions of times, so the schedule is tested without waiting. Jitter
spreads the renewals of agents that registered together: the renewal moment
is drawn uniformly from ``[1/2 - jitter/2, 1/2 + jitter/2]`` of the lifetime
(with the default 0.1, between 45 % and 55 %).
"""

from __future__ import annotations

import random
from datetime import datetime

DEFAULT_JITTER = 0.1
# After a failed renewal: 1 s, 2 s, 4 s ... at most 60 s, and never past a quarter of what is left.
FAILURE_INITIAL = 1.0
FAILURE_MAX = 60.0


def renewal_time(
    not_before: datetime, not_after: datetime, *, jitter: float, rng: random.Random
) -> datetime:
    """The moment to renew an SVID valid from ``not_before`` to ``not_after``."""
    if not 0.0 <= jitter <= 0.5:
        raise ValueError("jitter is a fraction of the lifetime in [0, 0.5]")
    fraction = 0.5 + jitter * (rng.random() - 0.5)
    return not_before + (not_after - not_before) * fraction


def renewal_delay(
    not_before: datetime,
    not_after: datetime,
    now: datetime,
    *,
    jitter: float = DEFAULT_JITTER,
    rng: random.Random,
) -> float:
    """Seconds to wait from ``now`` until the renewal moment (0 when it has passed)."""
    at = renewal_time(not_before, not_after, jitter=jitter, rng=rng)
    return max(0.0, (at - now).total_seconds())


def failure_delay(failures: int, now: datetime, not_after: datetime, rng: random.Random) -> float:
    """Seconds before retrying after ``failures`` (>= 1) consecutive failed renewals."""
    base = min(FAILURE_MAX, FAILURE_INITIAL * 2.0 ** min(failures - 1, 32))
    remaining = (not_after - now).total_seconds()
    if remaining > 0:
        base = min(base, max(FAILURE_INITIAL, remaining / 4))
    # Jitter in [base/2, base] so agents that failed together do not retry together.
    return base * (0.5 + 0.5 * rng.random())
