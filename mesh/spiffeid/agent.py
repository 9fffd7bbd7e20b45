"""The SPIFFE ID of an agent in trustmesh: ``spiffe://<trust-domain>/agent/<did-id>``.

``<did-id>`` is the id part of the agent's ``did:mesh`` (base58btc, so always a
valid path segment). One DID maps to exactly one SPIFFE ID per trust domain,
and back.
"""

from __future__ import annotations

from mesh.did import DID
from mesh.errors import InvalidIdentifier
from mesh.spiffeid.id import SpiffeID
from mesh.spiffeid.trustdomain import TrustDomain

AGENT_SEGMENT = "agent"
_AGENT_PATH = f"/{AGENT_SEGMENT}/"


def agent_spiffe_id(trust_domain: TrustDomain | str, did: DID | str) -> SpiffeID:
    """The SPIFFE ID of the agent ``did`` in ``trust_domain``."""
    the_did = did if isinstance(did, DID) else DID.parse(did)
    td = trust_domain if isinstance(trust_domain, TrustDomain) else TrustDomain.parse(trust_domain)
    # A valid DID's id is base58btc: always one valid path segment, as "agent" is.
    return SpiffeID._checked_path(td, _AGENT_PATH + the_did.id)


def did_from_agent_spiffe_id(spiffe_id: SpiffeID | str) -> DID:
    """The DID an agent SPIFFE ID names; :class:`InvalidIdentifier` if it is not an agent ID."""
    sid = spiffe_id if isinstance(spiffe_id, SpiffeID) else SpiffeID.parse(spiffe_id)
    segments = sid.segments
    if len(segments) != 2 or segments[0] != AGENT_SEGMENT:
        raise InvalidIdentifier(
            f"{sid} is not an agent SPIFFE ID",
            hint=f"agent IDs look like spiffe://{sid.trust_domain}/agent/<did:mesh id>",
        )
    try:
        return DID(segments[1])
    except InvalidIdentifier as exc:
        raise InvalidIdentifier(
            f"{sid} is not an agent SPIFFE ID: {exc.message}", hint=exc.hint
        ) from None


def is_agent_spiffe_id(spiffe_id: SpiffeID) -> bool:
    try:
        did_from_agent_spiffe_id(spiffe_id)
    except InvalidIdentifier:
        return False
    return True
