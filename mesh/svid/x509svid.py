"""X.509-SVIDs: loading them, and validating them exactly as the X509-SVID spec says.

:func:`verify_x509svid` is an ordered checklist; every step is one rule of the
spec and fails with an :class:`SVIDError` whose ``rule`` names the step:

1. ``chain``               the chain is a non-empty list of certificates, leaf first
2. ``uri-san``             the leaf has exactly one URI SAN; it is a SPIFFE ID with a path
3. ``san-critical``        with an empty subject, the SAN extension is critical (spec 3.1)
4. ``basic-constraints``   the leaf is not a CA (cA = false) (spec 4.1, 5.2)
5. ``key-usage``           KeyUsage is present, critical, with digitalSignature (spec 4.3)
6. ``leaf-key-usage``      the leaf sets neither keyCertSign nor cRLSign (spec 4.3, 5.2)
7. ``extended-key-usage``  when present, EKU has serverAuth and clientAuth (spec 4.4)
8. ``signing-certificate`` every signing certificate has cA = true and keyCertSign (spec 3.2)
9. ``validity``            every certificate presented is within its validity period
10. ``bundle``             a bundle of the SPIFFE ID's own trust domain has X.509 authorities
11. ``path``               RFC 5280 path validation to one of those authorities (spec 5.1)

Steps 2-9 are checked before path validation so each failure is reported by
name rather than as "no valid path"; the path validator (``cryptography``'s
WebPKI-derived verifier) re-checks validity and CA constraints and adds
signatures, unknown critical extensions and key strength.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from mesh.errors import InvalidIdentifier
from mesh.spiffeid import SpiffeID
from mesh.svid.errors import SVIDError
from mesh.svid.source import BundleSource, bundle_for

SVIDPrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

_KEY_TYPES = (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)
# A chain is a leaf and a few intermediates; more is a denial-of-service attempt.
MAX_CHAIN_LENGTH = 8

X509_RULES: tuple[str, ...] = (
    "chain",
    "uri-san",
    "san-critical",
    "basic-constraints",
    "key-usage",
    "leaf-key-usage",
    "extended-key-usage",
    "signing-certificate",
    "validity",
    "bundle",
    "path",
)


@dataclass(frozen=True, slots=True)
class X509SVID:
    """An X.509-SVID: its SPIFFE ID, its chain (leaf first) and, for our own SVID, its key.

    Construction checks every rule that needs no bundle or clock (steps 1-8),
    so a loaded SVID is well-formed; :func:`verify_x509svid` decides whether it
    is trusted now.
    """

    spiffe_id: SpiffeID
    certificates: tuple[x509.Certificate, ...]
    private_key: SVIDPrivateKey | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        certs = _check_chain(self.certificates)
        found = check_x509svid_shape(certs)
        if found != self.spiffe_id:
            raise SVIDError(
                "uri-san", f"the leaf certificate names {found}, not {self.spiffe_id}"
            )
        if self.private_key is not None:
            _check_key_matches(certs[0], self.private_key)

    @classmethod
    def from_chain(
        cls, certificates: Sequence[x509.Certificate], private_key: SVIDPrivateKey | None = None
    ) -> X509SVID:
        certs = _check_chain(certificates)
        return cls(check_x509svid_shape(certs), certs, private_key)

    @classmethod
    def parse(
        cls, cert_pem: bytes, key_pem: bytes | None = None, *, password: bytes | None = None
    ) -> X509SVID:
        """From PEM bytes: the chain (leaf first) and optionally the PKCS#8 private key."""
        certs = _load_pem_chain(cert_pem)
        key = _load_pem_key(key_pem, password) if key_pem is not None else None
        return cls.from_chain(certs, key)

    @classmethod
    def load(
        cls,
        cert: bytes | str | os.PathLike[str],
        key: bytes | str | os.PathLike[str] | None = None,
        *,
        password: bytes | None = None,
    ) -> X509SVID:
        """From PEM content or from files such as ``svid.0.pem`` and ``svid.0.key``.

        ``bytes`` and strings holding ``-----BEGIN`` are PEM content; any other
        string or path is a file name.
        """
        cert_pem = _read_pem(cert, "certificate")
        key_pem = _read_pem(key, "private key") if key is not None else None
        return cls.parse(cert_pem, key_pem, password=password)

    @property
    def leaf(self) -> x509.Certificate:
        return self.certificates[0]

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        return self.certificates[1:]

    @property
    def expires_at(self) -> dt.datetime:
        return self.leaf.not_valid_after_utc

    @property
    def issued_at(self) -> dt.datetime:
        return self.leaf.not_valid_before_utc

    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.certificates)

    def key_pem(self, password: bytes | None = None) -> bytes:
        """The private key as PKCS#8 PEM (encrypted with ``password`` if given). Never log it."""
        if self.private_key is None:
            raise SVIDError("key", "this SVID has no private key (it was loaded without one)")
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )


def verify_x509svid(
    chain: Sequence[x509.Certificate] | X509SVID,
    bundle: BundleSource,
    now: dt.datetime | None = None,
) -> SpiffeID:
    """Validate an X.509-SVID chain (leaf first) and return its SPIFFE ID.

    ``bundle`` is the bundle of the SVID's trust domain, or bundles keyed by
    trust domain. ``now`` defaults to the current time (naive means UTC).
    """
    certs = _check_chain(chain.certificates if isinstance(chain, X509SVID) else chain)  # 1
    spiffe_id = check_x509svid_shape(certs)  # 2-8
    when = _utc(now)
    for index, cert in enumerate(certs):  # 9
        _check_validity(cert, when, _describe(index))
    trusted = bundle_for(bundle, spiffe_id.trust_domain, "bundle")  # 10
    if not trusted.x509_authorities:
        raise SVIDError(
            "bundle",
            f"the bundle of {spiffe_id.trust_domain} has no X.509 authorities",
            hint="that trust domain does not (or no longer) issue X.509-SVIDs",
        )
    verified = _check_path(certs, trusted.x509_authorities, when, spiffe_id)  # 11
    for index, cert in enumerate(verified[1:], start=1):  # 8, for the authority reached too
        _check_signing_certificate(cert, _describe(index, len(verified)))
    return spiffe_id


def check_x509svid_shape(certs: Sequence[x509.Certificate]) -> SpiffeID:
    """Steps 2-8: the rules a chain must meet whatever the bundle and the time."""
    leaf = certs[0]
    spiffe_id = _check_uri_san(leaf)  # 2
    _check_san_critical(leaf)  # 3
    _check_leaf_basic_constraints(leaf)  # 4
    usage = _check_key_usage(leaf)  # 5
    _check_leaf_key_usage(usage)  # 6
    _check_extended_key_usage(leaf)  # 7
    for index, cert in enumerate(certs[1:], start=1):  # 8
        _check_signing_certificate(cert, _describe(index))
    return spiffe_id


# --- the steps -----------------------------------------------------------------------------------


def _check_chain(chain: Sequence[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    if isinstance(chain, x509.Certificate):
        chain = [chain]
    if not isinstance(chain, Sequence) or isinstance(chain, str | bytes):
        raise SVIDError(
            "chain", f"an X.509-SVID chain is a list of certificates, got {type(chain).__name__}"
        )
    if not chain:
        raise SVIDError("chain", "the X.509-SVID chain is empty", hint="pass the leaf first")
    if len(chain) > MAX_CHAIN_LENGTH:
        raise SVIDError(
            "chain", f"the chain has {len(chain)} certificates; at most {MAX_CHAIN_LENGTH}"
        )
    for index, cert in enumerate(chain):
        if not isinstance(cert, x509.Certificate):
            raise SVIDError(
                "chain", f"chain[{index}] is a {type(cert).__name__}, not an X.509 certificate"
            )
    return tuple(chain)


_E = TypeVar("_E", bound=x509.ExtensionType)


def _extension(cert: x509.Certificate, kind: type[_E], where: str) -> x509.Extension[_E] | None:
    try:
        return cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None
    except x509.DuplicateExtension:
        raise SVIDError("chain", f"the {where} repeats an extension") from None
    except ValueError as exc:
        raise SVIDError("chain", f"the {where} has a malformed extension: {exc}") from None


def _check_uri_san(leaf: x509.Certificate) -> SpiffeID:
    san = _extension(leaf, x509.SubjectAlternativeName, "leaf certificate")
    if san is None:
        raise SVIDError(
            "uri-san",
            "the leaf certificate has no subjectAltName, so no SPIFFE ID",
            hint="an X.509-SVID carries its SPIFFE ID as its one URI SAN",
        )
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    if not uris:
        raise SVIDError(
            "uri-san",
            "the leaf certificate has no URI SAN, so no SPIFFE ID",
            hint="an X.509-SVID carries its SPIFFE ID as its one URI SAN",
        )
    if len(uris) > 1:
        raise SVIDError(
            "uri-san",
            f"the leaf certificate has {len(uris)} URI SANs; an X.509-SVID has exactly one",
        )
    try:
        spiffe_id = SpiffeID.parse(uris[0])
    except InvalidIdentifier as exc:
        raise SVIDError(
            "uri-san", f"the leaf's URI SAN is not a valid SPIFFE ID: {exc.message}", hint=exc.hint
        ) from None
    if spiffe_id.is_root:
        raise SVIDError(
            "uri-san",
            f"the leaf's SPIFFE ID {spiffe_id} has no path",
            hint="a trust domain's own ID identifies no workload; leaf SVIDs have a path",
        )
    return spiffe_id


def _check_san_critical(leaf: x509.Certificate) -> None:
    san = _extension(leaf, x509.SubjectAlternativeName, "leaf certificate")
    if san is not None and len(leaf.subject) == 0 and not san.critical:
        raise SVIDError(
            "san-critical",
            "the leaf has an empty subject but its subjectAltName is not critical",
            hint="RFC 5280 4.1.2.6: mark the SAN critical when the subject is empty",
        )


def _check_leaf_basic_constraints(leaf: x509.Certificate) -> None:
    # An absent extension means cA = false (RFC 5280 4.2.1.9).
    bc = _extension(leaf, x509.BasicConstraints, "leaf certificate")
    if bc is not None and bc.value.ca:
        raise SVIDError(
            "basic-constraints",
            "the leaf certificate is a CA (basicConstraints cA = true)",
            hint="a signing certificate never authenticates; present a leaf SVID",
        )


def _check_key_usage(leaf: x509.Certificate) -> x509.KeyUsage:
    ku = _extension(leaf, x509.KeyUsage, "leaf certificate")
    if ku is None:
        raise SVIDError("key-usage", "the leaf certificate has no keyUsage extension")
    if not ku.critical:
        raise SVIDError("key-usage", "the leaf certificate's keyUsage extension is not critical")
    if not ku.value.digital_signature:
        raise SVIDError("key-usage", "the leaf certificate's keyUsage lacks digitalSignature")
    return ku.value


def _check_leaf_key_usage(usage: x509.KeyUsage) -> None:
    if usage.key_cert_sign:
        raise SVIDError("leaf-key-usage", "the leaf certificate's keyUsage sets keyCertSign")
    if usage.crl_sign:
        raise SVIDError("leaf-key-usage", "the leaf certificate's keyUsage sets cRLSign")


def _check_extended_key_usage(leaf: x509.Certificate) -> None:
    eku = _extension(leaf, x509.ExtendedKeyUsage, "leaf certificate")
    if eku is None:
        return  # SHOULD be present, not MUST
    missing = [
        name
        for name, oid in (
            ("serverAuth", ExtendedKeyUsageOID.SERVER_AUTH),
            ("clientAuth", ExtendedKeyUsageOID.CLIENT_AUTH),
        )
        if oid not in eku.value
    ]
    if missing:
        raise SVIDError(
            "extended-key-usage",
            f"the leaf certificate's extendedKeyUsage lacks {' and '.join(missing)}",
            hint="an X.509-SVID's EKU, when present, has both serverAuth and clientAuth",
        )


def _check_signing_certificate(cert: x509.Certificate, where: str) -> None:
    bc = _extension(cert, x509.BasicConstraints, where)
    if bc is None or not bc.value.ca:
        raise SVIDError("signing-certificate", f"the {where} is not a CA (cA is not true)")
    ku = _extension(cert, x509.KeyUsage, where)
    if ku is None or not ku.value.key_cert_sign:
        raise SVIDError("signing-certificate", f"the {where} does not set keyCertSign")


def _check_validity(cert: x509.Certificate, now: dt.datetime, where: str) -> None:
    if now < cert.not_valid_before_utc:
        raise SVIDError(
            "validity",
            f"the {where} is not valid before {cert.not_valid_before_utc.isoformat()} "
            f"(now {now.isoformat()})",
            hint="check this host's clock",
        )
    if now > cert.not_valid_after_utc:
        raise SVIDError(
            "validity",
            f"the {where} expired at {cert.not_valid_after_utc.isoformat()} "
            f"(now {now.isoformat()})",
            hint="renew the SVID",
        )


def _check_path(
    certs: tuple[x509.Certificate, ...],
    authorities: Sequence[x509.Certificate],
    now: dt.datetime,
    spiffe_id: SpiffeID,
) -> list[x509.Certificate]:
    # SPIFFE rules on the SAN were checked above (step 3); the WebPKI default also
    # forbids a critical SAN beside a non-empty subject, which X.509-SVIDs may have.
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
    )
    verifier = (
        PolicyBuilder()
        .store(Store(list(authorities)))
        .time(now)
        .max_chain_depth(MAX_CHAIN_LENGTH)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy)
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(certs[0], list(certs[1:]))
    except VerificationError as exc:
        detail = str(exc).split(" (encountered processing", 1)[0]
        current = [a for a in authorities if a.not_valid_before_utc <= now <= a.not_valid_after_utc]
        hint = (
            "every X.509 authority in that bundle is outside its validity period"
            if not current
            else "the SVID was not issued by a current authority of its trust domain; "
            "refresh the bundle or renew the SVID"
        )
        raise SVIDError(
            "path",
            f"the chain of {spiffe_id} does not lead to an X.509 authority of "
            f"{spiffe_id.trust_domain}: {detail}",
            hint=hint,
        ) from None
    return list(verified.chain)


# --- helpers -------------------------------------------------------------------------------------


def _describe(index: int, length: int | None = None) -> str:
    if index == 0:
        return "leaf certificate"
    if length is not None and index == length - 1:
        return "trusted authority"
    return f"signing certificate #{index}"


def _utc(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    return now.replace(tzinfo=dt.UTC) if now.tzinfo is None else now.astimezone(dt.UTC)


def _check_key_matches(leaf: x509.Certificate, key: SVIDPrivateKey) -> None:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    mine = key.public_key().public_bytes(serialization.Encoding.DER, spki)
    theirs = leaf.public_key().public_bytes(serialization.Encoding.DER, spki)
    if mine != theirs:
        raise SVIDError(
            "key",
            "the private key does not belong to the leaf certificate",
            hint="load the key file written together with this certificate",
        )


def _read_pem(source: bytes | str | os.PathLike[str], what: str) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, str) and "-----BEGIN" in source:
        return source.encode("ascii", "replace")
    path = Path(source)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SVIDError("load", f"cannot read the {what} file {path}: {exc.strerror}") from None


def _load_pem_chain(pem: bytes) -> list[x509.Certificate]:
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise SVIDError(
            "load", "no PEM certificate found", hint="expected '-----BEGIN CERTIFICATE-----'"
        )
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise SVIDError("load", f"the certificate PEM does not parse: {exc}") from None


def _load_pem_key(pem: bytes, password: bytes | None) -> SVIDPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except TypeError as exc:  # password given for a plain key, or missing for an encrypted one
        raise SVIDError("load", f"the private key file: {exc}") from None
    except ValueError:
        # The message never includes key material, but keep ours generic all the same.
        raise SVIDError(
            "load",
            "the private key PEM does not parse (or the password is wrong)",
            hint="expected a PKCS#8 '-----BEGIN PRIVATE KEY-----' block",
        ) from None
    if not isinstance(key, _KEY_TYPES):
        raise SVIDError("load", f"unsupported SVID private key type {type(key).__name__}")
    return key
