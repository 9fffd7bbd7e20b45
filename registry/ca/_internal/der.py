"""The leaf profile of ``leaf.build_leaf`` encoded directly in DER.

Issuing an X.509-SVID is the registry's hottest CA operation, and
``x509.CertificateBuilder`` spends most of its time in Python objects around
the two things that matter: encoding the to-be-signed part and one ECDSA
signature. For a leaf with a single URI SAN (every X.509-SVID and operator
certificate) this module writes the TBSCertificate from fixed pieces, exactly
as ``CertificateBuilder`` encodes the same certificate (a test compares the
bytes), signs it with the issuer's key and parses the result back into an
``x509.Certificate``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _length(len(content)) + content


def sequence(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def integer(value: int) -> bytes:
    """A non-negative INTEGER, minimally encoded (a leading 0 keeps it positive)."""
    if value < 0:
        raise ValueError("only non-negative integers are encoded here")
    return tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def time(at: datetime) -> bytes:
    """RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; whole seconds."""
    at = at.astimezone(UTC)
    if 1950 <= at.year < 2050:
        return tlv(0x17, at.strftime("%y%m%d%H%M%SZ").encode("ascii"))
    return tlv(0x18, f"{at.year:04d}{at.strftime('%m%d%H%M%SZ')}".encode("ascii"))


def _extension(oid: bytes, value: bytes, *, critical: bool) -> bytes:
    return sequence(oid, b"\x01\x01\xff" if critical else b"", tlv(0x04, value))


# OIDs, encoded once.
_ECDSA_WITH_SHA256 = sequence(bytes.fromhex("06082a8648ce3d040302"))
_SAN = bytes.fromhex("0603551d11")
_BASIC_CONSTRAINTS = bytes.fromhex("0603551d13")
_KEY_USAGE = bytes.fromhex("0603551d0f")
_EXTENDED_KEY_USAGE = bytes.fromhex("0603551d25")
_SUBJECT_KEY_ID = bytes.fromhex("0603551d0e")
_AUTHORITY_KEY_ID = bytes.fromhex("0603551d23")
_SERVER_AUTH = bytes.fromhex("06082b06010505070301")
_CLIENT_AUTH = bytes.fromhex("06082b06010505070302")

_VERSION_3 = tlv(0xA0, integer(2))
_EMPTY_NAME = sequence()
# CA=false (the default, so an empty SEQUENCE), critical.
_BASIC_CONSTRAINTS_LEAF = _extension(_BASIC_CONSTRAINTS, sequence(), critical=True)
# digitalSignature only: BIT STRING, 7 unused bits, 0x80.
_KEY_USAGE_DIGITAL_SIGNATURE = _extension(_KEY_USAGE, bytes.fromhex("03020780"), critical=True)
_EKU_SERVER_CLIENT = _extension(
    _EXTENDED_KEY_USAGE, sequence(_SERVER_AUTH, _CLIENT_AUTH), critical=False
)


class LeafSigner:
    """Signs URI-SAN leaves for one issuer (its name and key identifier encoded once)."""

    def __init__(self, certificate: x509.Certificate, private_key: ec.EllipticCurvePrivateKey,
                 subject_key_identifier: bytes) -> None:
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
            private_key.curve, ec.SECP256R1
        ):
            raise ValueError("the direct encoder signs with P-256 issuers only")
        self._key = private_key
        self._issuer = certificate.subject.public_bytes()
        self._aki = _extension(
            _AUTHORITY_KEY_ID,
            sequence(tlv(0x80, subject_key_identifier)),
            critical=False,
        )

    def tbs(
        self,
        public_key: ec.EllipticCurvePublicKey,
        *,
        serial: int,
        uri: str,
        not_before: datetime,
        not_after: datetime,
    ) -> bytes:
        """The TBSCertificate bytes of the leaf profile (see ``leaf.build_leaf``)."""
        spki = public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        point = public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        # RFC 5280 4.2.1.2 method 1, as SubjectKeyIdentifier.from_public_key computes it.
        ski = hashlib.sha1(point, usedforsecurity=False).digest()
        san = sequence(tlv(0x86, uri.encode("ascii")))
        extensions = (
            _extension(_SAN, san, critical=True)
            + _BASIC_CONSTRAINTS_LEAF
            + _KEY_USAGE_DIGITAL_SIGNATURE
            + _EKU_SERVER_CLIENT
            + _extension(_SUBJECT_KEY_ID, tlv(0x04, ski), critical=False)
            + self._aki
        )
        return sequence(
            _VERSION_3,
            integer(serial),
            _ECDSA_WITH_SHA256,
            self._issuer,
            sequence(time(not_before), time(not_after)),
            _EMPTY_NAME,
            spki,
            tlv(0xA3, sequence(extensions)),
        )

    def sign(self, tbs: bytes) -> x509.Certificate:
        signature = self._key.sign(tbs, ec.ECDSA(hashes.SHA256()))
        der = sequence(tbs, _ECDSA_WITH_SHA256, tlv(0x03, b"\x00" + signature))
        return x509.load_der_x509_certificate(der)
