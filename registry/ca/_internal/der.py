"""The leaf profile of ``leaf.build_leaf`` encoded directly in DER.

Issuing an X.509-SVID is the registry's hottest CA operation, and
``x509.CertificateBuilder`` spends most of its time in Python objects around
the two things that matter: encoding the to-be-signed part and one ECDSA
signature. For a leaf with a single URI SAN (every X.509-SVID and operator
certificate) this module writes the TBSCertificate from fixed pieces, exactly
as ``CertificateBuilder`` encodes the same certificate (a test compares the
bytes), and signs it with the issuer's key. The result is the DER and the
fields the registry reads (:class:`SignedLeaf`): parsing it back into an
``x509.Certificate`` and encoding that again would cost as much as the rest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
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
    size = len(content)
    if size < 0x80:  # the short form, most TLVs of a leaf
        return bytes((tag, size)) + content
    return bytes((tag,)) + _length(size) + content


def sequence(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def integer(value: int) -> bytes:
    """A non-negative INTEGER, minimally encoded (a leading 0 keeps it positive)."""
    if value < 0:
        raise ValueError("only non-negative integers are encoded here")
    return tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def time(at: datetime) -> bytes:
    """RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; whole seconds."""
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    clock = (at.month, at.day, at.hour, at.minute, at.second)
    if 1950 <= at.year < 2050:
        # UTCTime: 13 bytes, YYMMDDHHMMSSZ.
        return b"\x17\x0d%02d%02d%02d%02d%02d%02dZ" % (at.year % 100, *clock)
    # GeneralizedTime: 15 bytes, YYYYMMDDHHMMSSZ.
    return b"\x18\x0f%04d%02d%02d%02d%02d%02dZ" % (at.year, *clock)


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


# The SubjectPublicKeyInfo of a P-256 key, as cryptography encodes it: this
# prefix, then the 65-byte uncompressed point.
_P256_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")
_P256_POINT_BYTES = 65
# The SubjectAltName extension up to its value (the OCTET STRING), critical.
_SAN_CRITICAL = _SAN + b"\x01\x01\xff"
# The extensions every leaf carries between its SAN and its key identifiers.
_FIXED_EXTENSIONS = _BASIC_CONSTRAINTS_LEAF + _KEY_USAGE_DIGITAL_SIGNATURE + _EKU_SERVER_CLIENT
# The SubjectKeyIdentifier extension up to its 20-byte SHA-1 (RFC 5280 4.2.1.2 method 1).
_SKI_PREFIX = _extension(_SUBJECT_KEY_ID, tlv(0x04, bytes(20)), critical=False)[:-20]


@dataclass(frozen=True, slots=True)
class SignedLeaf:
    """A leaf certificate as signed here: its DER and the fields the registry reads
    from it, known without parsing it back (the names are ``x509.Certificate``'s)."""

    der: bytes
    serial_number: int
    #: The validity as the certificate states it: UTC, whole seconds.
    not_valid_before_utc: datetime
    not_valid_after_utc: datetime
    #: The CA certificate that signed it.
    issuer: x509.Certificate

    def certificate(self) -> x509.Certificate:
        """The leaf parsed (each call parses it again)."""
        return x509.load_der_x509_certificate(self.der)


def request_spki(request_info: bytes) -> bytes:
    """The SubjectPublicKeyInfo, as encoded, of a DER CertificationRequestInfo
    (``csr.tbs_certrequest_bytes``): SEQUENCE { version, subject, spki, ... }.
    For a request the parser has accepted."""
    position = _content_start(request_info, 0)
    position = _end(request_info, position)  # version
    position = _end(request_info, position)  # subject
    return request_info[position : _end(request_info, position)]


def _content_start(data: bytes, at: int) -> int:
    first = data[at + 1]
    return at + 2 + (first & 0x7F if first & 0x80 else 0)


def _end(data: bytes, at: int) -> int:
    first = data[at + 1]
    if not first & 0x80:
        return at + 2 + first
    size = first & 0x7F
    return at + 2 + size + int.from_bytes(data[at + 2 : at + 2 + size], "big")


class LeafSigner:
    """Signs URI-SAN leaves for one issuer (its name, key identifier and signature
    algorithm made once)."""

    def __init__(self, certificate: x509.Certificate, private_key: ec.EllipticCurvePrivateKey,
                 subject_key_identifier: bytes) -> None:
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
            private_key.curve, ec.SECP256R1
        ):
            raise ValueError("the direct encoder signs with P-256 issuers only")
        self._certificate = certificate
        self._key = private_key
        self._algorithm = ec.ECDSA(hashes.SHA256())
        # Between the serial and the validity: the signature algorithm and issuer name.
        self._algorithm_and_issuer = _ECDSA_WITH_SHA256 + certificate.subject.public_bytes()
        self._aki = _extension(
            _AUTHORITY_KEY_ID,
            sequence(tlv(0x80, subject_key_identifier)),
            critical=False,
        )

    def sign_leaf(
        self,
        public_key: ec.EllipticCurvePublicKey,
        *,
        serial: int,
        uri: str,
        not_before: datetime,
        not_after: datetime,
        spki: bytes | None = None,
    ) -> SignedLeaf:
        """A leaf of the profile of ``leaf.build_leaf``, signed.

        ``spki``: ``public_key``'s SubjectPublicKeyInfo as a request carried it
        (see :func:`request_spki`). It is used as is when it is the one encoding
        cryptography gives a P-256 key (named curve, uncompressed point), which
        spares encoding the key again; otherwise the key is encoded here.
        """
        if spki is None or not _is_p256_uncompressed(spki):
            spki = public_key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        if _is_p256_uncompressed(spki):
            point = spki[len(_P256_SPKI_PREFIX) :]
        else:
            point = public_key.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        # RFC 5280 4.2.1.2 method 1, as SubjectKeyIdentifier.from_public_key computes it.
        ski = hashlib.sha1(point, usedforsecurity=False).digest()
        # SAN: SEQUENCE { OID, critical, OCTET STRING { GeneralNames { [6] uri } } }.
        san = tlv(0x30, _SAN_CRITICAL + tlv(0x04, tlv(0x30, tlv(0x86, uri.encode("ascii")))))
        extensions = san + _FIXED_EXTENSIONS + _SKI_PREFIX + ski + self._aki
        tbs = tlv(
            0x30,
            b"".join(
                (
                    _VERSION_3,
                    integer(serial),
                    self._algorithm_and_issuer,
                    tlv(0x30, time(not_before) + time(not_after)),
                    _EMPTY_NAME,
                    spki,
                    tlv(0xA3, tlv(0x30, extensions)),
                )
            ),
        )
        return SignedLeaf(
            self.sign(tbs), serial, _whole_seconds(not_before), _whole_seconds(not_after),
            self._certificate,
        )

    def sign(self, tbs: bytes) -> bytes:
        """The DER certificate of ``tbs``, signed with the issuer's key."""
        signature = self._key.sign(tbs, self._algorithm)
        return sequence(tbs, _ECDSA_WITH_SHA256, tlv(0x03, b"\x00" + signature))


def _is_p256_uncompressed(spki: bytes) -> bool:
    return len(spki) == len(_P256_SPKI_PREFIX) + _P256_POINT_BYTES and spki.startswith(
        _P256_SPKI_PREFIX
    )


def _whole_seconds(at: datetime) -> datetime:
    """``at`` as an encoded certificate time reads back: UTC, no fraction."""
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    return at.replace(microsecond=0)
