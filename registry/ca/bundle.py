"""The trust bundle the CA publishes: its non-expired authorities, any state.

PREPARED authorities are included so peers trust them before they sign;
RETIRED ones stay until they expire so SVIDs they issued keep verifying.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mesh.bundle import Bundle
from mesh.spiffeid import TrustDomain
from registry.ca.authority import AuthoritySet, JWTAuthority, X509Authority

# How often a consumer should re-fetch the bundle (spiffe_refresh_hint). A new
# authority is PREPARED long before it signs, so minutes are plenty.
DEFAULT_REFRESH_HINT = timedelta(minutes=5)


def build_bundle(
    trust_domain: TrustDomain,
    x509_authorities: AuthoritySet[X509Authority],
    jwt_authorities: AuthoritySet[JWTAuthority],
    *,
    sequence: int,
    refresh_hint: timedelta = DEFAULT_REFRESH_HINT,
    now: datetime,
) -> Bundle:
    """The bundle at ``now``; ``sequence`` increases whenever the authority set changes."""
    return Bundle(
        trust_domain,
        x509_authorities=[a.certificate for a in x509_authorities.trusted(now)],
        jwt_authorities={a.kid: a.public_key for a in jwt_authorities.trusted(now)},
        sequence=sequence,
        refresh_hint=max(1, int(refresh_hint.total_seconds())),
    )


def trust_anchors_pem(certificates: Iterable[x509.Certificate]) -> bytes:
    """Concatenated PEM of CA certificates (what ``bundle.pem`` holds)."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)
