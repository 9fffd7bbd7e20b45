"""Trust tiers: fixed bands of the 0-1000 score.

=========  ==========  =====================================
tier       score       meaning
=========  ==========  =====================================
untrusted  0-199       sandbox only
low        200-399
medium     400-599
high       600-799
maximum    800-1000
=========  ==========  =====================================

The bands are part of the product's contract (reports, enforcer rules), so they
are not policy settings; which execution ring each tier allows is
(``rings.tier_rings`` in the policy).
"""

from __future__ import annotations

from enum import Enum

from trust.errors import TrustError

MIN_SCORE = 0
MAX_SCORE = 1000


class Tier(Enum):
    """A band of the trust score. ``rank`` orders tiers (0 = untrusted ... 4 = maximum)."""

    UNTRUSTED = "untrusted"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    MAXIMUM = "maximum"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)

    @property
    def lower(self) -> int:
        """Lowest score in this tier."""
        return _LOWER[self.rank]

    @property
    def upper(self) -> int:
        """Highest score in this tier."""
        return _LOWER[self.rank + 1] - 1 if self.rank + 1 < len(_ORDER) else MAX_SCORE

    def __str__(self) -> str:
        return self.value


_ORDER = (Tier.UNTRUSTED, Tier.LOW, Tier.MEDIUM, Tier.HIGH, Tier.MAXIMUM)
_LOWER = (0, 200, 400, 600, 800)
TIERS: tuple[Tier, ...] = _ORDER
# Lowest score of each tier above the first: where the rounded score changes tier.
TIER_BOUNDARIES: tuple[int, ...] = _LOWER[1:]


def tier_for(score: int) -> Tier:
    """The tier of an integer score in 0..1000; :class:`TrustError` otherwise."""
    if isinstance(score, bool) or not isinstance(score, int):
        raise TrustError(
            f"a trust score is an integer, got {type(score).__name__}",
            hint="pass Score.value, an int in 0..1000",
        )
    if not MIN_SCORE <= score <= MAX_SCORE:
        raise TrustError(
            f"trust score {score} is outside {MIN_SCORE}..{MAX_SCORE}",
            hint="scores come from trust.compute_score, which always stays in range",
        )
    return tier_of(score)


def tier_of(score: int) -> Tier:
    """:func:`tier_for` without the argument checks (``score`` is an int in 0..1000)."""
    # Four comparisons beat a bisect call at this size and keep the hot path simple.
    if score >= 800:
        return Tier.MAXIMUM
    if score >= 600:
        return Tier.HIGH
    if score >= 400:
        return Tier.MEDIUM
    if score >= 200:
        return Tier.LOW
    return Tier.UNTRUSTED
