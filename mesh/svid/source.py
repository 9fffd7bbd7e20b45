"""Choosing the bundle that may vouch for an SVID: always the bundle of the SVID's trust domain."""

from __future__ import annotations

from collections.abc import Mapping

from mesh.bundle import Bundle
from mesh.spiffeid import TrustDomain
from mesh.svid.errors import SVIDError

# One bundle, or bundles keyed by trust domain (a federated set).
BundleSource = Bundle | Mapping[TrustDomain, Bundle]


def bundle_for(source: BundleSource, trust_domain: TrustDomain, rule: str) -> Bundle:
    """The bundle of ``trust_domain``; never one of another trust domain."""
    if isinstance(source, Bundle):
        bundle: Bundle | None = source if source.trust_domain == trust_domain else None
        have = f"only the bundle of {source.trust_domain}"
    else:
        bundle = source.get(trust_domain)
        if bundle is not None and bundle.trust_domain != trust_domain:
            bundle = None  # a mis-keyed mapping must not lend one domain's keys to another
        have = f"bundles of {', '.join(sorted(str(t) for t in source)) or 'no trust domain'}"
    if bundle is None:
        raise SVIDError(
            rule,
            f"no trust bundle for trust domain {trust_domain} ({have})",
            hint="an SVID is only valid against the bundle of its own trust domain; "
            "federate with that trust domain to accept it",
        )
    return bundle
