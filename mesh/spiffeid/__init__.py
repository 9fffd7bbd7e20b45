"""SPIFFE IDs and trust domains (the SPIFFE-ID specification), matchers, agent IDs."""

from mesh.spiffeid._chars import MAX_ID_BYTES, MAX_TRUST_DOMAIN_BYTES, SCHEME, SCHEME_PREFIX
from mesh.spiffeid.agent import (
    AGENT_SEGMENT,
    agent_spiffe_id,
    did_from_agent_spiffe_id,
    is_agent_spiffe_id,
)
from mesh.spiffeid.id import SpiffeID
from mesh.spiffeid.match import (
    Matcher,
    MatchError,
    match_any,
    match_id,
    match_member_of,
    match_one_of,
)
from mesh.spiffeid.trustdomain import TrustDomain

__all__ = [
    "AGENT_SEGMENT",
    "MAX_ID_BYTES",
    "MAX_TRUST_DOMAIN_BYTES",
    "SCHEME",
    "SCHEME_PREFIX",
    "MatchError",
    "Matcher",
    "SpiffeID",
    "TrustDomain",
    "agent_spiffe_id",
    "did_from_agent_spiffe_id",
    "is_agent_spiffe_id",
    "match_any",
    "match_id",
    "match_member_of",
    "match_one_of",
]
