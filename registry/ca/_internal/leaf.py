"""The one leaf-certificate profile every certificate this CA issues follows."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from registry.ca._internal.der import SignedLeaf
from registry.ca.authority import AuthorityState, X509Authority
from registry.ca.errors import CAStateError, CertificateRequestRejected

# Leaves are valid from slightly before issuance so a peer whose clock lags a
# little does not reject a brand-new certificate.
LEAF_BACKDATE = timedelta(seconds=30)

_KEY_USAGE = x509.KeyUsage(
    # X.509-SVID spec 4.3: digitalSignature MUST be set; keyEncipherment and
    # keyAgreement MAY be. They only matter for RSA key transport and static
    # ECDH, neither of which TLS 1.2 ECDHE / TLS 1.3 with P-256 uses.
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)
_EKU = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])


def check_ttl(ttl: timedelta, maximum: timedelta) -> timedelta:
    """A positive TTL, capped at ``maximum``; a non-positive one is refused."""
    if not isinstance(ttl, timedelta):
        raise CertificateRequestRejected(
            f"a TTL is a timedelta, got {type(ttl).__name__}", hint="pass a positive duration"
        )
    if ttl <= timedelta(0):
        raise CertificateRequestRejected(
            f"the requested TTL {ttl.total_seconds():g}s is not positive",
            hint="ask for a positive lifetime, or omit it for the default",
        )
    return min(ttl, maximum)


def build_leaf(
    public_key: ec.EllipticCurvePublicKey,
    *,
    issuer: X509Authority,
    uri: str,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address] = (),
    ttl: timedelta,
    now: datetime,
) -> x509.Certificate:
    """Sign a leaf for ``public_key`` whatever anyone asked for.

    Empty subject; one critical SAN holding exactly one URI (plus DNS/IP names
    for serving certificates); CA=false (critical); keyUsage digitalSignature
    (critical); EKU serverAuth+clientAuth; a random 159-bit positive serial;
    SKI and AKI; notAfter never past the issuer's.
    """
    if not dns_names and not ip_addresses and uri.isascii():
        # The same certificate, encoded directly (see _internal.der; a test checks
        # that the bytes signed are the ones CertificateBuilder produces).
        return sign_uri_leaf(public_key, issuer=issuer, uri=uri, ttl=ttl, now=now).certificate()
    not_before, not_after = _validity(issuer, ttl=ttl, now=now)
    serial = x509.random_serial_number()
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri)]
    names += [x509.DNSName(name) for name in dns_names]
    names += [x509.IPAddress(ip) for ip in ip_addresses]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        # Critical because the subject is empty (RFC 5280 4.2.1.6).
        .add_extension(x509.SubjectAlternativeName(names), critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_KEY_USAGE, critical=True)
        .add_extension(_EKU, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier(
                key_identifier=issuer.subject_key_identifier,
                authority_cert_issuer=None,
                authority_cert_serial_number=None,
            ),
            critical=False,
        )
        .sign(issuer.private_key, hashes.SHA256())
    )


def sign_uri_leaf(
    public_key: ec.EllipticCurvePublicKey,
    *,
    issuer: X509Authority,
    uri: str,
    ttl: timedelta,
    now: datetime,
    spki: bytes | None = None,
) -> SignedLeaf:
    """The profile of :func:`build_leaf` for a leaf whose one name is the ASCII
    ``uri`` (every X.509-SVID), as signed DER (``spki``: see ``LeafSigner.sign_leaf``)."""
    if not uri.isascii():
        raise CertificateRequestRejected(
            f"the URI {uri[:80]!r} is not ASCII", hint="a SPIFFE ID is ASCII"
        )
    not_before, not_after = _validity(issuer, ttl=ttl, now=now)
    return issuer.leaf_signer.sign_leaf(
        public_key,
        serial=x509.random_serial_number(),
        uri=uri,
        not_before=not_before,
        not_after=not_after,
        spki=spki,
    )


def _validity(issuer: X509Authority, *, ttl: timedelta, now: datetime) -> tuple[datetime, datetime]:
    """(notBefore, notAfter) of a leaf ``issuer`` signs at ``now``: backdated a
    little, never outside the issuer's own validity; only the active one signs."""
    if issuer.state is not AuthorityState.ACTIVE:
        raise CAStateError(
            f"authority {issuer.id} is {issuer.state.value}; only the active one signs",
            hint="sign with the active authority",
        )
    if now < issuer.not_before or now >= issuer.not_after:
        raise CAStateError(
            f"the CA certificate is valid from {issuer.not_before.isoformat()} to "
            f"{issuer.not_after.isoformat()}, not at {now.isoformat()}",
            hint="rotate the CA (prepare and activate a new authority) or fix the clock",
        )
    return max(now - LEAF_BACKDATE, issuer.not_before), min(now + ttl, issuer.not_after)
