"""The CSR's self-signature is checked with the key already loaded when it is ECDSA
with SHA-256 (``x509svid._signature_valid``): it must agree with cryptography's
``is_signature_valid`` on every CSR, good or bad, whatever its algorithm says."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from registry.ca._internal.der import sequence, tlv
from registry.ca.x509svid import _signature_valid

_ECDSA_SHA256 = bytes.fromhex("06082a8648ce3d040302")
_ECDSA_SHA384 = bytes.fromhex("06082a8648ce3d040303")


def _csr(key: ec.EllipticCurvePrivateKey, digest: hashes.HashAlgorithm) -> bytes:
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent")]))
        .sign(key, digest)
        .public_bytes(serialization.Encoding.DER)
    )


def _reassembled(csr: bytes, algorithm: bytes | None = None, signature: bytes | None = None,
                 tbs: bytes | None = None) -> bytes:
    parsed = x509.load_der_x509_csr(csr)
    body = tbs if tbs is not None else parsed.tbs_certrequest_bytes
    alg = algorithm if algorithm is not None else sequence(_ECDSA_SHA256)
    sig = signature if signature is not None else parsed.signature
    return sequence(body, alg, tlv(0x03, b"\x00" + sig))


def _reference(csr: x509.CertificateSigningRequest) -> bool:
    try:
        return bool(csr.is_signature_valid)
    except Exception:
        return False


def _cases() -> list[tuple[str, bytes]]:
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    good = _csr(key, hashes.SHA256())
    sig = bytearray(x509.load_der_x509_csr(good).signature)
    sig[-1] ^= 1
    tbs = bytearray(x509.load_der_x509_csr(good).tbs_certrequest_bytes)
    at = bytes(tbs).index(b"agent")
    tbs[at] ^= 1  # "agent" -> "`gent": still a valid request, not the one signed
    return [
        ("sha256", good),
        ("sha384", _csr(key, hashes.SHA384())),
        ("sha512", _csr(key, hashes.SHA512())),
        ("round trip", _reassembled(good)),
        ("flipped signature bit", _reassembled(good, signature=bytes(sig))),
        ("altered request", _reassembled(good, tbs=bytes(tbs))),
        ("other key's signature", _reassembled(
            good, signature=x509.load_der_x509_csr(_csr(other, hashes.SHA256())).signature)),
        ("says SHA-384, signed SHA-256", _reassembled(good, algorithm=sequence(_ECDSA_SHA384))),
        ("not a signature", _reassembled(good, signature=b"\x30\x00")),
    ]


@pytest.mark.parametrize(("name", "der"), _cases(), ids=[name for name, _ in _cases()])
def test_agrees_with_is_signature_valid(name: str, der: bytes) -> None:
    csr = x509.load_der_x509_csr(der)
    public_key = csr.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert _signature_valid(csr, public_key) is _reference(csr)


def test_good_signatures_pass_and_bad_ones_fail() -> None:
    results = {name: _signature_valid(x509.load_der_x509_csr(der),
                                      x509.load_der_x509_csr(der).public_key())  # type: ignore[arg-type]
               for name, der in _cases()}
    assert results["sha256"] and results["sha384"] and results["round trip"]
    assert not results["flipped signature bit"]
    assert not results["altered request"]
    assert not results["other key's signature"]
    assert not results["says SHA-384, signed SHA-256"]


def test_ecdsa_algorithms_with_parameters_do_not_even_load() -> None:
    """Why the OID and hash alone identify the algorithm: cryptography refuses
    ECDSA algorithm identifiers that carry parameters when it parses the CSR."""
    good = _csr(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    for parameters in (b"\x05\x00", b"\x02\x01\x01"):
        with pytest.raises(ValueError):
            x509.load_der_x509_csr(
                _reassembled(good, algorithm=sequence(_ECDSA_SHA256, parameters))
            )
