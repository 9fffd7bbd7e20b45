"""X.509-SVID issuance from a certificate signing request (CSR).

The agent makes its key and sends a CSR; the CA checks it strictly and signs
a leaf whose every field the CA chooses. What the CSR may carry:

* an EC P-256 public key (nothing else: RSA, Ed25519 and other curves are
  refused) and a valid self-signature (proof of possession of that key);
* no SAN, or a SAN with exactly one URI equal to the SPIFFE ID being issued;
* no request to be a CA (basicConstraints CA=true, keyUsage keyCertSign or
  cRLSign, nameConstraints).

Anything else in it (subject, other extensions, attributes) is ignored: the
leaf gets the fixed profile of ``registry.ca._internal.leaf.build_leaf``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import SignatureAlgorithmOID

from mesh.errors import InvalidIdentifier
from mesh.spiffeid import SpiffeID
from registry.ca._internal.der import SignedLeaf, request_spki
from registry.ca._internal.leaf import check_ttl, sign_uri_leaf
from registry.ca.authority import X509Authority
from registry.ca.errors import CertificateRequestRejected, CSRReason, CSRRejected

MAX_CSR_BYTES = 8 * 1024
DEFAULT_X509_SVID_TTL = timedelta(hours=1)
MAX_X509_SVID_TTL = timedelta(hours=24)

_ECDSA_WITH_SHA256 = SignatureAlgorithmOID.ECDSA_WITH_SHA256
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())

_MAKE_CSR = "make a CSR with an ECDSA P-256 key (e.g. `openssl req -new -key k.pem -subj /`)"


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM or DER CSR, capped at :data:`MAX_CSR_BYTES`. Does not check the signature."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CSRRejected(CSRReason.UNPARSEABLE, "the CSR must be bytes (PEM or DER)")
    data = bytes(data)
    if len(data) > MAX_CSR_BYTES:
        raise CSRRejected(
            CSRReason.TOO_LARGE,
            f"the CSR is {len(data)} bytes; the limit is {MAX_CSR_BYTES}",
            hint="send a plain CSR with one P-256 key and at most one URI SAN",
        )
    if not data:
        raise CSRRejected(CSRReason.UNPARSEABLE, "the CSR is empty", hint=_MAKE_CSR)
    is_pem = data.lstrip().startswith(b"-----BEGIN")
    try:
        if is_pem:
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    # Hostile bytes can fail inside the parser in more than one way; each is
    # a bad request, never a crash.
    except (ValueError, TypeError, x509.InvalidVersion, UnsupportedAlgorithm) as exc:
        kind = "PEM" if is_pem else "DER"
        raise CSRRejected(
            CSRReason.UNPARSEABLE,
            f"the CSR is not a valid {kind} PKCS#10 certificate request ({exc})",
            hint=_MAKE_CSR,
        ) from None


def check_csr(
    csr: x509.CertificateSigningRequest, spiffe_id: SpiffeID
) -> ec.EllipticCurvePublicKey:
    """Apply every rule above; return the CSR's public key if it passes."""
    public_key = _public_key(csr)
    if not _signature_valid(csr, public_key):
        raise CSRRejected(
            CSRReason.BAD_SIGNATURE,
            "the CSR's signature does not verify with its own public key "
            "(no proof of possession of the key)",
            hint="sign the CSR with the private key whose public key it carries",
        )
    try:
        extensions = list(csr.extensions)
    except (ValueError, TypeError, x509.DuplicateExtension, UnsupportedAlgorithm) as exc:
        raise CSRRejected(
            CSRReason.MALFORMED_EXTENSIONS,
            f"the CSR's requested extensions cannot be parsed ({exc})",
            hint="request no extensions, or only a URI SAN with the SPIFFE ID",
        ) from None
    for extension in extensions:
        _check_extension(extension.value, spiffe_id)
    return public_key


def _signature_valid(
    csr: x509.CertificateSigningRequest, public_key: ec.EllipticCurvePublicKey
) -> bool:
    """``csr.is_signature_valid``, never raising. For ECDSA with SHA-256 (what every
    P-256 CSR tool makes) the check is done here with the key already loaded,
    which spares loading it a second time: the same verification
    ``is_signature_valid`` runs for that algorithm (a test compares them)."""
    try:
        if csr.signature_algorithm_oid == _ECDSA_WITH_SHA256 and isinstance(
            csr.signature_hash_algorithm, hashes.SHA256
        ):
            public_key.verify(csr.signature, csr.tbs_certrequest_bytes, _ECDSA_SHA256)
            return True
        return bool(csr.is_signature_valid)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False


def validate_csr(data: bytes, spiffe_id: SpiffeID) -> ec.EllipticCurvePublicKey:
    """:func:`load_csr` then :func:`check_csr`."""
    return check_csr(load_csr(data), spiffe_id)


def sign_x509_svid(
    csr: bytes,
    spiffe_id: SpiffeID | str,
    authority: X509Authority,
    *,
    now: datetime,
    ttl: timedelta = DEFAULT_X509_SVID_TTL,
    max_ttl: timedelta = MAX_X509_SVID_TTL,
) -> SignedLeaf:
    """Sign an X.509-SVID for ``spiffe_id`` from ``csr``: the leaf as signed (DER,
    serial, validity, issuer; ``.certificate()`` parses it).

    ``notAfter`` = min(now + ttl, CA notAfter); ``ttl`` is capped at ``max_ttl``.
    Raises :class:`CSRRejected` for a bad CSR and :class:`CertificateRequestRejected`
    for a SPIFFE ID outside the authority's trust domain or a bad TTL.
    """
    sid = workload_spiffe_id(spiffe_id, authority)
    lifetime = check_ttl(ttl, max_ttl)
    request = load_csr(csr)
    public_key = check_csr(request, sid)
    return sign_uri_leaf(
        public_key,
        issuer=authority,
        uri=str(sid),
        ttl=lifetime,
        now=now,
        # The key as the request encodes it (the leaf carries the same bytes).
        spki=request_spki(request.tbs_certrequest_bytes),
    )


def authority_trust_domain(authority: X509Authority) -> str:
    """The trust domain named by a CA certificate's URI SAN (``spiffe://<td>``)."""
    return authority.trust_domain


def workload_spiffe_id(spiffe_id: SpiffeID | str, authority: X509Authority) -> SpiffeID:
    """Parse ``spiffe_id`` and check it is a workload ID of the authority's trust domain."""
    try:
        sid = spiffe_id if isinstance(spiffe_id, SpiffeID) else SpiffeID.parse(spiffe_id)
    except InvalidIdentifier as exc:
        raise CertificateRequestRejected(exc.message, hint=exc.hint) from None
    trust_domain = authority_trust_domain(authority)
    if sid.trust_domain.name != trust_domain:
        raise CertificateRequestRejected(
            f"{sid} is outside this CA's trust domain {trust_domain}",
            hint=f"ask for an ID under spiffe://{trust_domain}/",
        )
    if sid.is_root:
        raise CertificateRequestRejected(
            f"{sid} names the trust domain itself, not a workload",
            hint="an SVID's SPIFFE ID has a path",
        )
    return sid


def _public_key(csr: x509.CertificateSigningRequest) -> ec.EllipticCurvePublicKey:
    try:
        key = csr.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CSRRejected(
            CSRReason.UNSUPPORTED_KEY,
            f"the CSR's public key is of an unsupported or malformed kind ({exc})",
            hint=_MAKE_CSR,
        ) from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1):
            return key
        raise CSRRejected(
            CSRReason.WRONG_CURVE,
            f"the CSR's key is on curve {key.curve.name}; only P-256 (secp256r1) is issued",
            hint=_MAKE_CSR,
        )
    kind = {
        rsa.RSAPublicKey: "RSA",
        ed25519.Ed25519PublicKey: "Ed25519",
        ed448.Ed448PublicKey: "Ed448",
    }
    name = next((label for cls, label in kind.items() if isinstance(key, cls)), type(key).__name__)
    raise CSRRejected(
        CSRReason.UNSUPPORTED_KEY,
        f"the CSR carries an {name} key; X.509-SVIDs here use ECDSA P-256 only "
        "(grpcio's TLS does not negotiate Ed25519 certificates)",
        hint=_MAKE_CSR,
    )


def _check_extension(value: x509.ExtensionType, spiffe_id: SpiffeID) -> None:
    if isinstance(value, x509.BasicConstraints) and value.ca:
        raise _ca_requested("basicConstraints CA=true")
    if isinstance(value, x509.KeyUsage) and (value.key_cert_sign or value.crl_sign):
        raise _ca_requested("keyUsage keyCertSign/cRLSign")
    if isinstance(value, x509.NameConstraints):
        raise _ca_requested("nameConstraints")
    if isinstance(value, x509.SubjectAlternativeName):
        _check_san(value, spiffe_id)


def _ca_requested(what: str) -> CSRRejected:
    return CSRRejected(
        CSRReason.CA_REQUESTED,
        f"the CSR asks to be a certificate authority ({what}); SVIDs are leaves",
        hint="remove the CA extensions from the CSR",
    )


def _check_san(san: x509.SubjectAlternativeName, spiffe_id: SpiffeID) -> None:
    others = [name for name in san if not isinstance(name, x509.UniformResourceIdentifier)]
    if others:
        shown = ", ".join(f"{type(n).__name__}={_short(n.value)}" for n in others[:4])
        raise CSRRejected(
            CSRReason.UNEXPECTED_SAN,
            f"the CSR asks for SANs other than the SPIFFE ID ({shown})",
            hint=f"request no SAN, or exactly one URI SAN {spiffe_id}",
        )
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) > 1:
        raise CSRRejected(
            CSRReason.MULTIPLE_URI_SANS,
            f"the CSR asks for {len(uris)} URI SANs; an X.509-SVID has exactly one",
            hint=f"request no SAN, or exactly one URI SAN {spiffe_id}",
        )
    if uris and uris[0] != str(spiffe_id):
        raise CSRRejected(
            CSRReason.WRONG_SPIFFE_ID,
            f"the CSR asks for {_short(uris[0])} but this request is for {spiffe_id}",
            hint=f"request no SAN, or exactly one URI SAN {spiffe_id}",
        )


def _short(value: object, limit: int = 80) -> str:
    text = str(value)
    return repr(text if len(text) <= limit else text[:limit] + "...")
