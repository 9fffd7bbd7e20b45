"""Errors raised by the registry's certificate authority.

Each carries a message a person can act on. The gRPC layer maps them:
``CSRRejected``, ``JWTSVIDRequestRejected``, ``CertificateRequestRejected`` ->
INVALID_ARGUMENT; ``CAKeyStoreError`` and ``CAStateError`` -> FAILED_PRECONDITION
at startup (they stop the server with the message), never INTERNAL.
"""

from __future__ import annotations

from enum import StrEnum

from mesh.errors import MeshError


class CAError(MeshError):
    """Base of every error the certificate authority raises."""


class CSRReason(StrEnum):
    """Why a certificate signing request was refused (stable, machine readable)."""

    TOO_LARGE = "too_large"
    UNPARSEABLE = "unparseable"
    BAD_SIGNATURE = "bad_signature"
    UNSUPPORTED_KEY = "unsupported_key"
    WRONG_CURVE = "wrong_curve"
    CA_REQUESTED = "ca_requested"
    UNEXPECTED_SAN = "unexpected_san"
    WRONG_SPIFFE_ID = "wrong_spiffe_id"
    MULTIPLE_URI_SANS = "multiple_uri_sans"
    MALFORMED_EXTENSIONS = "malformed_extensions"


class CSRRejected(CAError):
    """A CSR is refused. ``reason`` says which rule it broke; ``str()`` says what to do."""

    def __init__(self, reason: CSRReason, message: str, *, hint: str | None = None) -> None:
        self.reason = reason
        super().__init__(message, hint=hint)


class CertificateRequestRejected(CAError):
    """A request for a certificate is refused for a reason other than its CSR.

    For example a SPIFFE ID outside the CA's trust domain, a non-positive TTL
    or a host name that cannot go into a certificate.
    """


class JWTSVIDRequestRejected(CAError):
    """A JWT-SVID request is refused: empty or oversized audience, bad TTL, foreign ID."""


class CAKeyStoreError(CAError):
    """The CA's key files cannot be used safely (permissions, passphrase, corruption)."""


class CAStateError(CAError):
    """The authority set is in a state that does not allow the operation.

    For example no ACTIVE authority, activating an authority that is not
    PREPARED, or a data directory that belongs to another trust domain.
    """
