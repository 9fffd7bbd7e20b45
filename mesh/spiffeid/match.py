"""Matchers: the authorisation question "is this peer's SPIFFE ID one I accept?".

A matcher is a callable that returns ``None`` when the ID is acceptable and
raises :class:`MatchError` (saying why) when it is not, in the style of
go-spiffe's ``spiffeid.Matcher``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mesh.errors import MeshError
from mesh.spiffeid.id import SpiffeID
from mesh.spiffeid.trustdomain import TrustDomain

Matcher = Callable[[SpiffeID], None]


class MatchError(MeshError):
    """A SPIFFE ID is valid but not one the caller accepts."""


def match_any() -> Matcher:
    """Accept every SPIFFE ID (authentication only; authorise elsewhere)."""

    def matcher(_: SpiffeID) -> None:
        return None

    return matcher


def match_id(expected: SpiffeID) -> Matcher:
    """Accept exactly ``expected``."""

    def matcher(actual: SpiffeID) -> None:
        if actual != expected:
            raise MatchError(f"unexpected SPIFFE ID {actual}; expected {expected}")

    return matcher


def match_one_of(*expected: SpiffeID | Iterable[SpiffeID]) -> Matcher:
    """Accept any of the given IDs (pass IDs, or one iterable of them)."""
    allowed: frozenset[SpiffeID] = frozenset(
        item
        for group in expected
        for item in ((group,) if isinstance(group, SpiffeID) else group)
    )

    def matcher(actual: SpiffeID) -> None:
        if actual not in allowed:
            raise MatchError(
                f"unexpected SPIFFE ID {actual}; it is not one of the {len(allowed)} accepted IDs"
            )

    return matcher


def match_member_of(trust_domain: TrustDomain) -> Matcher:
    """Accept any ID in ``trust_domain`` (including the trust domain's own ID)."""

    def matcher(actual: SpiffeID) -> None:
        if actual.trust_domain != trust_domain:
            raise MatchError(
                f"unexpected trust domain {actual.trust_domain} in {actual}; "
                f"expected a member of {trust_domain}"
            )

    return matcher
