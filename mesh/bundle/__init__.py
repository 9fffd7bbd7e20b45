"""SPIFFE trust bundles: the authorities of a trust domain, in the SPIFFE bundle format."""

from mesh.bundle._jwk import JWTAuthority
from mesh.bundle.bundle import MAX_BUNDLE_BYTES, USE_JWT_SVID, USE_X509_SVID, Bundle
from mesh.bundle.errors import BundleError

__all__ = [
    "MAX_BUNDLE_BYTES",
    "USE_JWT_SVID",
    "USE_X509_SVID",
    "Bundle",
    "BundleError",
    "JWTAuthority",
]
