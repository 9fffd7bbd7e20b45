"""The registry's certificate authority.

X.509 and JWT signing authorities with a PREPARED -> ACTIVE -> RETIRED
lifecycle, stored under ``<data_dir>/ca``; X.509-SVIDs from agents' CSRs; the
registry's serving certificate and operator certificates; ES256 JWT-SVIDs;
the SPIFFE trust bundle. The server uses :class:`CertificateAuthority`.
"""

from registry.ca._internal.der import SignedLeaf
from registry.ca.authority import AuthorityState, JWTAuthority, X509Authority
from registry.ca.certificate_authority import CertificateAuthority
from registry.ca.errors import (
    CAError,
    CAKeyStoreError,
    CAStateError,
    CertificateRequestRejected,
    CSRReason,
    CSRRejected,
    JWTSVIDRequestRejected,
)
from registry.ca.serving import IssuedCertificate
from registry.ca.x509svid import MAX_CSR_BYTES

__all__ = [
    "MAX_CSR_BYTES",
    "AuthorityState",
    "CAError",
    "CAKeyStoreError",
    "CAStateError",
    "CSRReason",
    "CSRRejected",
    "CertificateAuthority",
    "CertificateRequestRejected",
    "IssuedCertificate",
    "JWTAuthority",
    "JWTSVIDRequestRejected",
    "SignedLeaf",
    "X509Authority",
]
