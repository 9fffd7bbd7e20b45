"""A tiny P-256 PKI for tests: make a CA, issue leaves with exactly the extensions a test wants.

Everything defaults to a well-formed X.509-SVID setup (empty leaf subject, one critical
URI SAN, KeyUsage critical digitalSignature, EKU serverAuth+clientAuth); each keyword
changes one property so a test can build one bad certificate per rule.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

UTC = dt.UTC
SERVER_AND_CLIENT = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)
LEAF_USAGE = frozenset({"digital_signature"})
CA_USAGE = frozenset({"key_cert_sign", "crl_sign"})
_USAGE_FLAGS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)
_DEFAULT = object()


def now() -> dt.datetime:
    return dt.datetime.now(UTC).replace(microsecond=0)


def key_usage(flags: frozenset[str]) -> x509.KeyUsage:
    unknown = flags - set(_USAGE_FLAGS)
    assert not unknown, unknown
    return x509.KeyUsage(
        **{name: name in flags for name in _USAGE_FLAGS},
        encipher_only=False,
        decipher_only=False,
    )


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class CA:
    """A signing certificate and its key. ``issue`` makes leaves, ``intermediate`` sub-CAs."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    trust_domain: str
    chain: list[x509.Certificate] = field(default_factory=list)  # this CA, then its parents

    def issue(self, spiffe_id: str | None = None, **kwargs: object) -> Leaf:
        return issue_leaf(self, spiffe_id, **kwargs)  # type: ignore[arg-type]

    def intermediate(self, **kwargs: object) -> CA:
        return make_ca(self.trust_domain, parent=self, **kwargs)  # type: ignore[arg-type]

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Leaf:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    chain: list[x509.Certificate]  # leaf first, then intermediates (never the root)

    def cert_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def make_ca(
    trust_domain: str = "mesh.local",
    *,
    parent: CA | None = None,
    key: ec.EllipticCurvePrivateKey | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    ca: bool | None = True,
    usage: frozenset[str] | None = CA_USAGE,
    usage_critical: bool = True,
    uri: str | object | None = _DEFAULT,
    name: str = "trustmesh test CA",
) -> CA:
    """A self-signed root (no ``parent``) or an intermediate signed by ``parent``."""
    key = key or new_key()
    start = not_before or now() - dt.timedelta(days=1)
    end = not_after or now() + dt.timedelta(days=30)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    issuer_cert = parent.cert if parent else None
    signer = parent.key if parent else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    )
    if parent is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()),
            critical=False,
        )
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
    if usage is not None:
        builder = builder.add_extension(key_usage(usage), critical=usage_critical)
    spiffe_uri = f"spiffe://{trust_domain}" if uri is _DEFAULT else uri
    if spiffe_uri is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(spiffe_uri))]),
            critical=False,
        )
    cert = builder.sign(signer, hashes.SHA256())
    chain = [cert, *(parent.chain if parent else [])]
    return CA(cert=cert, key=key, trust_domain=trust_domain, chain=chain)


def issue_leaf(
    ca: CA,
    spiffe_id: str | None = None,
    *,
    uris: Sequence[str] | None = None,
    dns_names: Sequence[str] = (),
    key: ec.EllipticCurvePrivateKey | None = None,
    subject: x509.Name | None = None,
    san_critical: bool = True,
    basic_constraints: bool | None = False,
    usage: frozenset[str] | None = LEAF_USAGE,
    usage_critical: bool = True,
    eku: Sequence[x509.ObjectIdentifier] | None = SERVER_AND_CLIENT,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    signer: ec.EllipticCurvePrivateKey | None = None,
) -> Leaf:
    """A leaf signed by ``ca``; by default a valid X.509-SVID for ``spiffe_id``."""
    key = key or new_key()
    if uris is None:
        uris = [spiffe_id or f"spiffe://{ca.trust_domain}/agent/test"]
    start = not_before or now() - dt.timedelta(minutes=5)
    end = not_after or now() + dt.timedelta(hours=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject or x509.Name([]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    names += [x509.DNSName(d) for d in dns_names]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=san_critical)
    if basic_constraints is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=basic_constraints, path_length=None), critical=True
        )
    if usage is not None:
        builder = builder.add_extension(key_usage(usage), critical=usage_critical)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    cert = builder.sign(signer or ca.key, hashes.SHA256())
    return Leaf(cert=cert, key=key, chain=[cert, *ca.chain[:-1]])
