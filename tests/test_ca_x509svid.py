"""X.509-SVID, serving and operator certificates from the registry CA, checked independently.

Every leaf is validated with cryptography's own X.509 path validation (the
RFC 5280 / CA/B profile it implements) and, field by field, against the
X.509-SVID rules. Every bad CSR is refused with its own reason.
"""

from __future__ import annotations

import ipaddress
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry.ca import (
    MAX_CSR_BYTES,
    CertificateAuthority,
    CertificateRequestRejected,
    CSRReason,
    CSRRejected,
)

TD = "example.org"
AGENT = "spiffe://example.org/agent/3J98t1WpEZ73CNmQviecrnyiWrnq"
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def ca(tmp_path: Path, clock: Clock) -> CertificateAuthority:
    return CertificateAuthority.open(tmp_path, TD, clock=clock)


def make_csr(
    key: object | None = None,
    *,
    sans: list[x509.GeneralName] | None = None,
    extensions: list[tuple[x509.ExtensionType, bool]] = (),  # type: ignore[assignment]
    subject: x509.Name | None = None,
    pem: bool = False,
) -> bytes:
    key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject or x509.Name([]))
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    for value, critical in extensions:
        builder = builder.add_extension(value, critical=critical)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = builder.sign(key, algorithm)  # type: ignore[arg-type]
    return csr.public_bytes(serialization.Encoding.PEM if pem else serialization.Encoding.DER)


def client_verify(leaf: x509.Certificate, anchors: list[x509.Certificate], at: datetime) -> list:
    verifier = PolicyBuilder().store(Store(anchors)).time(at).build_client_verifier()
    verified = verifier.verify(leaf, [])
    return list(verified.subjects or [])


def assert_svid_profile(
    leaf: x509.Certificate,
    issuer: x509.Certificate,
    spiffe_id: str,
    public_key: ec.EllipticCurvePublicKey,
    *,
    issued_at: datetime,
    not_after: datetime,
    extra_names: list[x509.GeneralName] = (),  # type: ignore[assignment]
) -> None:
    """Each X.509-SVID rule, one assertion per rule."""
    assert leaf.version is x509.Version.v3
    assert leaf.subject == x509.Name([])
    assert leaf.issuer == issuer.subject
    assert leaf.public_key() == public_key
    assert leaf.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
    leaf.verify_directly_issued_by(issuer)

    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical  # empty subject => SAN critical
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == [spiffe_id]  # exactly one URI SAN
    others = [n for n in san.value if not isinstance(n, x509.UniformResourceIdentifier)]
    assert others == list(extra_names)

    bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False and bc.value.path_length is None

    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature
    assert not ku.value.key_cert_sign and not ku.value.crl_sign
    assert not ku.value.content_commitment and not ku.value.data_encipherment

    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert set(eku.value) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}

    ski = leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(public_key)
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    issuer_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert aki.value.key_identifier == issuer_ski.value.digest

    # Exactly these six extensions, whatever the CSR asked for.
    assert {type(e.value) for e in leaf.extensions} == {
        x509.SubjectAlternativeName,
        x509.BasicConstraints,
        x509.KeyUsage,
        x509.ExtendedKeyUsage,
        x509.SubjectKeyIdentifier,
        x509.AuthorityKeyIdentifier,
    }
    assert len(list(leaf.extensions)) == 6

    assert leaf.serial_number > 0
    assert leaf.serial_number.bit_length() >= 64
    assert issued_at - timedelta(minutes=1) <= leaf.not_valid_before_utc <= issued_at
    assert leaf.not_valid_after_utc == not_after


# --- the happy path -------------------------------------------------------------------------


def test_svid_from_der_csr_follows_the_profile_and_verifies(ca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    chain = ca.issue_x509_svid(make_csr(key), AGENT)
    authority = ca.active_x509_authority().certificate
    assert len(chain) == 2 and chain[1] == authority
    assert_svid_profile(
        chain[0],
        authority,
        AGENT,
        key.public_key(),
        issued_at=T0,
        not_after=T0 + timedelta(hours=1),
    )
    assert client_verify(chain[0], [authority], T0) == [x509.UniformResourceIdentifier(AGENT)]


def test_svid_from_pem_csr_with_the_expected_uri_san(ca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = make_csr(key, sans=[x509.UniformResourceIdentifier(AGENT)], pem=True)
    chain = ca.issue_x509_svid(csr, AGENT, ttl=timedelta(minutes=10))
    assert_svid_profile(
        chain[0],
        chain[1],
        AGENT,
        key.public_key(),
        issued_at=T0,
        not_after=T0 + timedelta(minutes=10),
    )


def test_whatever_else_the_csr_asks_the_leaf_gets_the_fixed_profile(
    ca: CertificateAuthority,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = make_csr(
        key,
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "admin")]),
        extensions=[
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False),
            (
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=True,
                    key_encipherment=True,
                    data_encipherment=True,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            ),
            (x509.OCSPNoCheck(), False),
        ],
    )
    chain = ca.issue_x509_svid(csr, AGENT)
    assert_svid_profile(
        chain[0], chain[1], AGENT, key.public_key(), issued_at=T0, not_after=T0 + timedelta(hours=1)
    )


def test_not_after_never_passes_the_ca(tmp_path: Path, clock: Clock) -> None:
    ca = CertificateAuthority.open(tmp_path, TD, clock=clock, ca_ttl=timedelta(hours=2))
    clock.now = T0 + timedelta(minutes=90)
    chain = ca.issue_x509_svid(make_csr(), AGENT)
    assert chain[0].not_valid_after_utc == chain[1].not_valid_after_utc == T0 + timedelta(hours=2)
    client_verify(chain[0], [chain[1]], clock.now)


def test_ttl_is_capped_and_must_be_positive(ca: CertificateAuthority) -> None:
    chain = ca.issue_x509_svid(make_csr(), AGENT, ttl=timedelta(days=30))
    assert chain[0].not_valid_after_utc == T0 + timedelta(hours=24)
    for bad in (timedelta(0), timedelta(seconds=-5)):
        with pytest.raises(CertificateRequestRejected, match="not positive"):
            ca.issue_x509_svid(make_csr(), AGENT, ttl=bad)


def test_expired_leaf_and_foreign_anchor_do_not_verify(ca: CertificateAuthority) -> None:
    chain = ca.issue_x509_svid(make_csr(), AGENT)
    with pytest.raises(VerificationError):
        client_verify(chain[0], [chain[1]], T0 + timedelta(hours=2))
    other = CertificateAuthority.open(Path(str(ca.bundle_path.parent) + "-other"), TD)
    with pytest.raises(VerificationError):
        client_verify(chain[0], other.trust_anchors(), T0)


def test_serials_are_unique_under_concurrent_issuance(ca: CertificateAuthority) -> None:
    csrs = [make_csr() for _ in range(8)]
    serials: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(csr: bytes) -> None:
        try:
            for _ in range(25):
                leaf = ca.issue_x509_svid(csr, AGENT)[0]
                with lock:
                    serials.append(leaf.serial_number)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in csrs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(serials) == 200 and len(set(serials)) == 200


def test_spiffe_id_must_be_a_workload_of_the_trust_domain(ca: CertificateAuthority) -> None:
    with pytest.raises(CertificateRequestRejected, match="outside this CA's trust domain"):
        ca.issue_x509_svid(make_csr(), "spiffe://other.org/agent/x")
    with pytest.raises(CertificateRequestRejected, match="trust domain itself"):
        ca.issue_x509_svid(make_csr(), "spiffe://example.org")
    with pytest.raises(CertificateRequestRejected, match="scheme"):
        ca.issue_x509_svid(make_csr(), "https://example.org/agent/x")


# --- bad CSRs: one reason each --------------------------------------------------------------


def _tampered_csr() -> bytes:
    der = make_csr(subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aaaa")]))
    assert der.count(b"aaaa") == 1
    return der.replace(b"aaaa", b"aaab")


BAD_CSRS = {
    "rsa": (lambda: make_csr(rsa.generate_private_key(65537, 2048)), CSRReason.UNSUPPORTED_KEY),
    "ed25519": (lambda: make_csr(ed25519.Ed25519PrivateKey.generate()), CSRReason.UNSUPPORTED_KEY),
    "p384": (lambda: make_csr(ec.generate_private_key(ec.SECP384R1())), CSRReason.WRONG_CURVE),
    "ca_requested": (
        lambda: make_csr(extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)]),
        CSRReason.CA_REQUESTED,
    ),
    "cert_sign_requested": (
        lambda: make_csr(
            extensions=[
                (
                    x509.KeyUsage(
                        digital_signature=True,
                        content_commitment=False,
                        key_encipherment=False,
                        data_encipherment=False,
                        key_agreement=False,
                        key_cert_sign=True,
                        crl_sign=False,
                        encipher_only=False,
                        decipher_only=False,
                    ),
                    True,
                )
            ]
        ),
        CSRReason.CA_REQUESTED,
    ),
    "extra_dns_san": (
        lambda: make_csr(
            sans=[x509.UniformResourceIdentifier(AGENT), x509.DNSName("evil.example.org")]
        ),
        CSRReason.UNEXPECTED_SAN,
    ),
    "ip_san_only": (
        lambda: make_csr(sans=[x509.IPAddress(ipaddress.ip_address("10.0.0.1"))]),
        CSRReason.UNEXPECTED_SAN,
    ),
    "wrong_uri_san": (
        lambda: make_csr(sans=[x509.UniformResourceIdentifier("spiffe://example.org/agent/other")]),
        CSRReason.WRONG_SPIFFE_ID,
    ),
    "two_uri_sans": (
        lambda: make_csr(
            sans=[
                x509.UniformResourceIdentifier(AGENT),
                x509.UniformResourceIdentifier("spiffe://example.org/agent/other"),
            ]
        ),
        CSRReason.MULTIPLE_URI_SANS,
    ),
    "bad_signature": (_tampered_csr, CSRReason.BAD_SIGNATURE),
    "garbage": (lambda: b"\x30\x82\x01\x00 this is not a CSR", CSRReason.UNPARSEABLE),
    "random_bytes": (lambda: bytes(range(256)) * 4, CSRReason.UNPARSEABLE),
    "truncated": (lambda: make_csr()[:-10], CSRReason.UNPARSEABLE),
    "bad_pem": (
        lambda: (
            b"-----BEGIN CERTIFICATE REQUEST-----\nnot base64!!\n"
            b"-----END CERTIFICATE REQUEST-----\n"
        ),
        CSRReason.UNPARSEABLE,
    ),
    "empty": (lambda: b"", CSRReason.UNPARSEABLE),
    "oversized": (lambda: make_csr() + b"\x00" * MAX_CSR_BYTES, CSRReason.TOO_LARGE),
}


@pytest.mark.parametrize("case", sorted(BAD_CSRS))
def test_bad_csr_is_rejected_with_its_own_reason(ca: CertificateAuthority, case: str) -> None:
    build, reason = BAD_CSRS[case]
    with pytest.raises(CSRRejected) as info:
        ca.issue_x509_svid(build(), AGENT)
    assert info.value.reason is reason, str(info.value)
    assert info.value.hint  # every refusal says what to do


def test_a_certificate_is_not_a_csr(ca: CertificateAuthority) -> None:
    pem = ca.active_x509_authority().certificate.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CSRRejected) as info:
        ca.issue_x509_svid(pem, AGENT)
    assert info.value.reason is CSRReason.UNPARSEABLE


def test_csr_at_the_size_limit_is_parsed(ca: CertificateAuthority) -> None:
    # Exactly MAX_CSR_BYTES is not "too large": it fails later, for what it is.
    with pytest.raises(CSRRejected) as info:
        ca.issue_x509_svid(b"\x00" * MAX_CSR_BYTES, AGENT)
    assert info.value.reason is CSRReason.UNPARSEABLE


# --- the registry's serving certificate -----------------------------------------------------


def test_serving_certificate_verifies_for_each_host(ca: CertificateAuthority) -> None:
    issued = ca.issue_serving_certificate(["registry.example.org", "10.1.2.3"])
    leaf, authority = issued.chain
    assert issued.private_key is not None
    assert leaf.public_key() == issued.private_key.public_key()
    extra = [
        x509.DNSName("registry.example.org"),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("10.1.2.3")),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    assert_svid_profile(
        leaf,
        authority,
        "spiffe://example.org/registry",
        issued.private_key.public_key(),
        issued_at=T0,
        not_after=T0 + timedelta(hours=24),
        extra_names=extra,
    )
    from cryptography.x509.verification import DNSName, IPAddress

    for subject in (
        DNSName("localhost"),
        DNSName("registry.example.org"),
        IPAddress(ipaddress.ip_address("127.0.0.1")),
        IPAddress(ipaddress.ip_address("10.1.2.3")),
    ):
        verifier = PolicyBuilder().store(Store([authority])).time(T0).build_server_verifier(subject)
        verifier.verify(leaf, [])
    with pytest.raises(VerificationError):
        PolicyBuilder().store(Store([authority])).time(T0).build_server_verifier(
            DNSName("other.example.org")
        ).verify(leaf, [])
    assert b"PRIVATE KEY" in issued.private_key_pem()
    assert issued.chain_pem().count(b"BEGIN CERTIFICATE") == 2


@pytest.mark.parametrize("host", ["*.example.org", "exa mple.org", "", "-bad.org", "a..b"])
def test_serving_certificate_refuses_bad_host_names(ca: CertificateAuthority, host: str) -> None:
    with pytest.raises(CertificateRequestRejected):
        ca.issue_serving_certificate([host])


def test_serving_hosts_must_be_a_list(ca: CertificateAuthority) -> None:
    with pytest.raises(CertificateRequestRejected, match="not one string"):
        ca.issue_serving_certificate("localhost")


# --- operator certificates ------------------------------------------------------------------


def test_operator_certificate_with_a_fresh_key(ca: CertificateAuthority) -> None:
    issued = ca.issue_operator_certificate("alice")
    assert issued.private_key is not None
    sid = "spiffe://example.org/operator/alice"
    assert_svid_profile(
        issued.leaf,
        issued.chain[1],
        sid,
        issued.private_key.public_key(),
        issued_at=T0,
        not_after=T0 + timedelta(hours=8),
    )
    assert client_verify(issued.leaf, [issued.chain[1]], T0) == [
        x509.UniformResourceIdentifier(sid)
    ]


def test_operator_certificate_from_a_csr_keeps_the_key_with_the_operator(
    ca: CertificateAuthority,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    sid = "spiffe://example.org/operator/bob"
    issued = ca.issue_operator_certificate(
        "bob", csr=make_csr(key, sans=[x509.UniformResourceIdentifier(sid)])
    )
    assert issued.private_key is None
    assert issued.leaf.public_key() == key.public_key()
    with pytest.raises(CertificateRequestRejected, match="key is with the requester"):
        issued.private_key_pem()
    with pytest.raises(CSRRejected) as info:
        ca.issue_operator_certificate(
            "bob", csr=make_csr(sans=[x509.UniformResourceIdentifier(AGENT)])
        )
    assert info.value.reason is CSRReason.WRONG_SPIFFE_ID


@pytest.mark.parametrize("name", ["", "..", "a/b", "al ice", "é"])
def test_operator_names_are_one_path_segment(ca: CertificateAuthority, name: str) -> None:
    with pytest.raises(CertificateRequestRejected, match="bad operator name"):
        ca.issue_operator_certificate(name)


# --- hostile bytes never crash the CA --------------------------------------------------------

_VALID_CSR = make_csr(sans=[x509.UniformResourceIdentifier(AGENT)])


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    position=st.integers(min_value=0, max_value=len(_VALID_CSR) - 1),
    value=st.integers(min_value=0, max_value=255),
    cut=st.integers(min_value=1, max_value=len(_VALID_CSR)),
)
def test_mutated_csr_is_issued_or_rejected_never_crashes(
    ca: CertificateAuthority, position: int, value: int, cut: int
) -> None:
    mutated = bytearray(_VALID_CSR)
    mutated[position] = value
    data = bytes(mutated[:cut])
    try:
        chain = ca.issue_x509_svid(data, AGENT)
    except CSRRejected as exc:
        assert exc.reason in CSRReason
    else:
        # A mutation that still parses and verifies must still yield a proper SVID.
        assert chain[0].extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.UniformResourceIdentifier) == [AGENT]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=2048))
def test_random_bytes_are_rejected(ca: CertificateAuthority, data: bytes) -> None:
    with pytest.raises(CSRRejected):
        ca.issue_x509_svid(data, AGENT)
