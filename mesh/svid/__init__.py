"""SVID validation on the agent side: X.509-SVIDs and JWT-SVIDs, per the SPIFFE specs."""

from mesh.svid.errors import SVIDError
from mesh.svid.jwtsvid import (
    ALLOWED_ALGORITHMS,
    DEFAULT_LEEWAY,
    JWT_RULES,
    JWTSVID,
    parse_and_validate_jwt_svid,
)
from mesh.svid.source import BundleSource, bundle_for
from mesh.svid.x509svid import X509_RULES, X509SVID, check_x509svid_shape, verify_x509svid

__all__ = [
    "ALLOWED_ALGORITHMS",
    "DEFAULT_LEEWAY",
    "JWTSVID",
    "JWT_RULES",
    "X509SVID",
    "X509_RULES",
    "BundleSource",
    "SVIDError",
    "bundle_for",
    "check_x509svid_shape",
    "parse_and_validate_jwt_svid",
    "verify_x509svid",
]
