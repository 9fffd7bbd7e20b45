"""The directly encoded leaf (registry.ca._internal.der) signs exactly the bytes
CertificateBuilder would for the same leaf: serials of every length, times
with microseconds, both sides of the UTCTime/GeneralizedTime switch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from registry.ca import CertificateAuthority
from registry.ca._internal.der import integer, request_spki, time
from registry.ca._internal.leaf import build_leaf


def _builder_leaf(
    authority: object,
    public_key: ec.EllipticCurvePublicKey,
    *,
    serial: int,
    uri: str,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    issuer = authority  # an X509Authority
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.certificate.subject)  # type: ignore[attr-defined]
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]),
                       critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                   ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier(
                key_identifier=issuer.subject_key_identifier,  # type: ignore[attr-defined]
                authority_cert_issuer=None,
                authority_cert_serial_number=None,
            ),
            critical=False,
        )
        .sign(issuer.private_key, hashes.SHA256())  # type: ignore[attr-defined]
    )


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> object:
    ca = CertificateAuthority.open(Path(tmp_path_factory.mktemp("ca")), "der.mesh")
    return ca.active_x509_authority()


T = datetime(2031, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)


@pytest.mark.parametrize(
    ("serial", "not_before", "not_after", "uri"),
    [
        (1, T, T + timedelta(hours=1), "spiffe://der.mesh/agent/a"),
        (0x7F, T, T + timedelta(hours=1), "spiffe://der.mesh/agent/b"),
        (0x80, T, T + timedelta(days=2), "spiffe://der.mesh/agent/" + "x" * 150),
        (2**158 + 12345, T, T + timedelta(seconds=1), "spiffe://der.mesh/agent/c"),
        (2**159 - 1, T, T + timedelta(hours=24), "spiffe://der.mesh/operator/alice"),
        (2**64, datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC),
         datetime(2050, 1, 1, 0, 0, 1, tzinfo=UTC), "spiffe://der.mesh/agent/y2050"),
        (42, datetime(2060, 6, 7, 8, 9, 10, 5, tzinfo=UTC),
         datetime(2061, 1, 1, tzinfo=UTC), "spiffe://der.mesh/agent/later"),
    ],
)
def test_direct_leaf_signs_what_the_builder_signs(
    authority: object, serial: int, not_before: datetime, not_after: datetime, uri: str
) -> None:
    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    expected = _builder_leaf(
        authority, public_key, serial=serial, uri=uri, not_before=not_before, not_after=not_after
    )
    signer = authority.leaf_signer  # type: ignore[attr-defined]
    signed = signer.sign_leaf(
        public_key, serial=serial, uri=uri, not_before=not_before, not_after=not_after
    )
    leaf = x509.load_der_x509_certificate(signed.der)
    assert leaf.tbs_certificate_bytes == expected.tbs_certificate_bytes
    leaf.verify_directly_issued_by(authority.certificate)  # type: ignore[attr-defined]
    assert leaf.signature_algorithm_oid == expected.signature_algorithm_oid
    assert list(leaf.extensions) == list(expected.extensions)
    assert leaf.serial_number == serial


def test_build_leaf_takes_the_direct_path_for_uri_only_leaves(authority: object) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    now = datetime.now(UTC)
    leaf = build_leaf(key, issuer=authority, uri="spiffe://der.mesh/agent/z",  # type: ignore[arg-type]
                      ttl=timedelta(hours=1), now=now)
    leaf.verify_directly_issued_by(authority.certificate)  # type: ignore[attr-defined]
    same = _builder_leaf(
        authority, key, serial=leaf.serial_number, uri="spiffe://der.mesh/agent/z",
        not_before=leaf.not_valid_before_utc, not_after=leaf.not_valid_after_utc,
    )
    assert leaf.tbs_certificate_bytes == same.tbs_certificate_bytes


def test_der_primitives() -> None:
    assert integer(0) == b"\x02\x01\x00"
    assert integer(127) == b"\x02\x01\x7f"
    assert integer(128) == b"\x02\x02\x00\x80"
    assert integer(256) == b"\x02\x02\x01\x00"
    with pytest.raises(ValueError):
        integer(-1)
    assert time(datetime(2049, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) == b"\x17\x0d491231235959Z"
    assert time(datetime(2050, 1, 1, tzinfo=UTC)) == b"\x18\x0f20500101000000Z"


def _csr(key: ec.EllipticCurvePrivateKey) -> x509.CertificateSigningRequest:
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, "a" * 60),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "b" * 60),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "c" * 60),
        ]))
        .sign(key, hashes.SHA256())
    )


def test_the_request_spki_is_the_keys_own_encoding() -> None:
    """request_spki finds the key where the request encodes it (past a long subject,
    whose length takes two bytes), and it is what cryptography encodes."""
    for _ in range(20):
        csr = _csr(ec.generate_private_key(ec.SECP256R1()))
        spki = request_spki(csr.tbs_certrequest_bytes)
        assert spki == csr.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def test_a_signed_leaf_says_what_its_certificate_says(authority: object) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = _csr(key)
    now = datetime(2031, 2, 3, 4, 5, 6, 789012, tzinfo=timezone(timedelta(hours=3)))
    signed = authority.leaf_signer.sign_leaf(  # type: ignore[attr-defined]
        key.public_key(), serial=2**150 + 7, uri="spiffe://der.mesh/agent/q",
        not_before=now, not_after=now + timedelta(hours=1, microseconds=5),
        spki=request_spki(csr.tbs_certrequest_bytes),
    )
    cert = signed.certificate()
    assert signed.der == cert.public_bytes(serialization.Encoding.DER)
    assert signed.serial_number == cert.serial_number
    assert signed.not_valid_before_utc == cert.not_valid_before_utc
    assert signed.not_valid_after_utc == cert.not_valid_after_utc
    assert signed.issuer is authority.certificate  # type: ignore[attr-defined]
    expected = _builder_leaf(
        authority, key.public_key(), serial=2**150 + 7, uri="spiffe://der.mesh/agent/q",
        not_before=now, not_after=now + timedelta(hours=1, microseconds=5),
    )
    assert cert.tbs_certificate_bytes == expected.tbs_certificate_bytes


def test_a_compressed_request_key_is_encoded_afresh(authority: object) -> None:
    """A SubjectPublicKeyInfo in another form than cryptography's (a compressed
    point) is not copied: the leaf carries the key as CertificateBuilder encodes it."""
    key = ec.generate_private_key(ec.SECP256R1())
    compressed = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    spki = bytes.fromhex("3039301306072a8648ce3d020106082a8648ce3d030107032200") + compressed
    signed = authority.leaf_signer.sign_leaf(  # type: ignore[attr-defined]
        key.public_key(), serial=99, uri="spiffe://der.mesh/agent/c", not_before=T,
        not_after=T + timedelta(hours=1), spki=spki,
    )
    expected = _builder_leaf(authority, key.public_key(), serial=99,
                             uri="spiffe://der.mesh/agent/c", not_before=T,
                             not_after=T + timedelta(hours=1))
    assert signed.certificate().tbs_certificate_bytes == expected.tbs_certificate_bytes


def test_issued_svids_are_the_signed_leaves(tmp_path: Path) -> None:
    ca = CertificateAuthority.open(tmp_path, "der.mesh")
    key = ec.generate_private_key(ec.SECP256R1())
    der = _csr(key).public_bytes(serialization.Encoding.DER)
    signed = ca.sign_x509_svid(der, "spiffe://der.mesh/agent/s")
    cert = signed.certificate()
    cert.verify_directly_issued_by(ca.active_x509_authority().certificate)
    assert cert.public_key() == key.public_key()
    leaf, issuer = ca.issue_x509_svid(der, "spiffe://der.mesh/agent/s")
    assert issuer is signed.issuer
    assert leaf.tbs_certificate_bytes[:4] == cert.tbs_certificate_bytes[:4]
    assert leaf.extensions[0] == cert.extensions[0]  # the same SAN
