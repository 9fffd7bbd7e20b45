"""The CA on disk: creation, permissions, passphrase, restart, rotation and the bundle."""

from __future__ import annotations

import json
import os
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store

from mesh.bundle import Bundle
from registry.ca import AuthorityState, CAKeyStoreError, CAStateError, CertificateAuthority

TD = "example.org"
AGENT = "spiffe://example.org/agent/x"
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def csr() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.DER)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def key_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "ca").glob("*.key.pem"))


def test_first_start_creates_private_files(tmp_path: Path) -> None:
    old = os.umask(0)  # even a permissive umask must not widen key files
    try:
        ca = CertificateAuthority.open(tmp_path / "data", TD, clock=Clock(T0))
    finally:
        os.umask(old)
    data = tmp_path / "data"
    assert mode(data / "ca") == 0o700
    keys = key_files(data)
    assert len(keys) == 2  # one X.509 authority, one JWT authority
    for path in keys:
        assert mode(path) == 0o600
        assert b"BEGIN PRIVATE KEY" in path.read_bytes()
    assert mode(data / "ca" / "manifest.json") == 0o600
    manifest = json.loads((data / "ca" / "manifest.json").read_text())
    assert manifest["trust_domain"] == TD and manifest["sequence"] == 1
    assert [e["state"] for e in manifest["x509"]] == ["active"]
    assert [e["state"] for e in manifest["jwt"]] == ["active"]
    assert not list((data / "ca").glob(".*.tmp"))
    # bundle.pem holds the trust anchors and is public.
    anchors = x509.load_pem_x509_certificates((data / "bundle.pem").read_bytes())
    assert anchors == [ca.active_x509_authority().certificate]
    assert ca.trust_anchors_pem() == (data / "bundle.pem").read_bytes()


def test_ca_certificate_profile(tmp_path: Path) -> None:
    ca = CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))
    cert = ca.active_x509_authority().certificate
    assert cert.subject == cert.issuer and cert.subject != x509.Name([])
    cert.verify_directly_issued_by(cert)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(cert.public_key().curve, ec.SECP256R1)  # type: ignore[union-attr]
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://example.org"]
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    assert cert.not_valid_after_utc == T0 + timedelta(days=365)
    assert cert.not_valid_before_utc <= T0


def test_restart_loads_the_same_ca(tmp_path: Path) -> None:
    first = CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))
    leaf = first.issue_x509_svid(csr(), AGENT)[0]
    second = CertificateAuthority.open(tmp_path, TD, clock=Clock(T0 + timedelta(minutes=1)))
    assert second.active_x509_authority().certificate == first.active_x509_authority().certificate
    assert second.active_jwt_authority().kid == first.active_jwt_authority().kid
    assert second.sequence == first.sequence
    assert second.bundle() == first.bundle()
    # A leaf from before the restart still chains to the reloaded CA.
    PolicyBuilder().store(Store(second.trust_anchors())).time(T0).build_client_verifier().verify(
        leaf, []
    )


def test_insecure_key_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))
    path = key_files(tmp_path)[0]
    path.chmod(0o644)
    with pytest.raises(CAKeyStoreError) as info:
        CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))
    assert "readable or writable by other users" in str(info.value)
    assert f"chmod 600 {path}" in str(info.value)


def test_insecure_ca_directory_is_refused(tmp_path: Path) -> None:
    CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))
    (tmp_path / "ca").chmod(0o755)
    with pytest.raises(CAKeyStoreError, match="chmod 700"):
        CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))


def test_symlinked_key_file_is_refused(tmp_path: Path) -> None:
    CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))
    path = key_files(tmp_path)[0]
    target = tmp_path / "elsewhere.pem"
    path.rename(target)
    path.symlink_to(target)
    with pytest.raises(CAKeyStoreError, match="not a symlink"):
        CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))


def test_missing_key_file_is_reported(tmp_path: Path) -> None:
    CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))
    key_files(tmp_path)[0].unlink()
    with pytest.raises(CAKeyStoreError, match="missing"):
        CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))


def test_passphrase_encrypts_the_keys(tmp_path: Path) -> None:
    ca = CertificateAuthority.open(tmp_path, TD, passphrase="correct horse", clock=Clock(T0))
    for path in key_files(tmp_path):
        assert b"BEGIN ENCRYPTED PRIVATE KEY" in path.read_bytes()
    with pytest.raises(CAKeyStoreError, match="no passphrase was given"):
        CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))
    with pytest.raises(CAKeyStoreError, match="wrong passphrase"):
        CertificateAuthority.open(tmp_path, TD, passphrase="battery staple", clock=Clock(T0))
    again = CertificateAuthority.open(tmp_path, TD, passphrase=b"correct horse", clock=Clock(T0))
    assert again.active_x509_authority().certificate == ca.active_x509_authority().certificate


def test_passphrase_for_unencrypted_keys_is_refused(tmp_path: Path) -> None:
    CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))
    with pytest.raises(CAKeyStoreError, match="not encrypted"):
        CertificateAuthority.open(tmp_path, TD, passphrase="x", clock=Clock(T0))
    with pytest.raises(CAKeyStoreError, match="empty"):
        CertificateAuthority.open(tmp_path / "new", TD, passphrase="", clock=Clock(T0))


def test_other_trust_domain_is_refused(tmp_path: Path) -> None:
    CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))
    with pytest.raises(CAStateError, match=re.escape("'example.org', not 'other.org'")):
        CertificateAuthority.open(tmp_path, "other.org", clock=Clock(T0))


@pytest.mark.parametrize(
    "corrupt",
    [
        b"not json",
        b"{}",
        b'{"format": 1, "trust_domain": "example.org", "sequence": 1, "encrypted": false,'
        b' "x509": [{"id": "../../etc/passwd", "state": "active"}], "jwt": []}',
        b'{"format": 1, "trust_domain": "example.org", "sequence": 0, "encrypted": false,'
        b' "x509": [], "jwt": []}',
    ],
)
def test_corrupt_manifest_is_reported(tmp_path: Path, corrupt: bytes) -> None:
    CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))
    (tmp_path / "ca" / "manifest.json").write_bytes(corrupt)
    with pytest.raises(CAKeyStoreError, match="corrupt"):
        CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))


def test_manifest_without_an_active_authority_is_inconsistent(tmp_path: Path) -> None:
    CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))
    path = tmp_path / "ca" / "manifest.json"
    doc = json.loads(path.read_text())
    doc["x509"][0]["state"] = "retired"
    path.write_text(json.dumps(doc))
    with pytest.raises(CAKeyStoreError, match="no active signing authority"):
        CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))


def test_naive_clock_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CAStateError, match="naive"):
        CertificateAuthority.open(tmp_path, TD, clock=lambda: datetime(2026, 1, 1))


# --- rotation: prepared -> active -> retired ------------------------------------------------


def _verify(leaf: x509.Certificate, anchors: list[x509.Certificate], at: datetime) -> None:
    PolicyBuilder().store(Store(anchors)).time(at).build_client_verifier().verify(leaf, [])


def test_x509_rotation_publishes_before_signing_and_keeps_the_old_until_expiry(
    tmp_path: Path,
) -> None:
    clock = Clock(T0)
    ca = CertificateAuthority.open(tmp_path, TD, clock=clock, ca_ttl=timedelta(days=10))
    old = ca.active_x509_authority()
    old_leaf = ca.issue_x509_svid(csr(), AGENT)[0]

    clock.now = T0 + timedelta(days=5)
    prepared = ca.prepare_x509_authority()
    assert prepared.state is AuthorityState.PREPARED
    assert ca.sequence == 2
    bundle = ca.bundle()
    assert bundle.sequence == 2
    assert set(bundle.x509_authorities) == {old.certificate, prepared.certificate}
    # Still signed by the old authority: the prepared one is only trusted so far.
    leaf = ca.issue_x509_svid(csr(), AGENT)[0]
    leaf.verify_directly_issued_by(old.certificate)
    assert x509.load_pem_x509_certificates((tmp_path / "bundle.pem").read_bytes()) == [
        old.certificate,
        prepared.certificate,
    ]

    ca.activate_x509_authority(prepared.id)
    assert ca.sequence == 3
    assert ca.active_x509_authority().id == prepared.id
    assert [a.state for a in ca.x509_authorities] == [AuthorityState.RETIRED, AuthorityState.ACTIVE]
    new_leaf = ca.issue_x509_svid(csr(), AGENT)[0]
    new_leaf.verify_directly_issued_by(prepared.certificate)
    # Both generations verify against the bundle while the old CA lives.
    _verify(old_leaf, list(ca.bundle().x509_authorities), T0 + timedelta(minutes=30))
    _verify(new_leaf, list(ca.bundle().x509_authorities), clock.now)

    # A restart sees the same states.
    again = CertificateAuthority.open(tmp_path, TD, clock=clock)
    assert [a.state for a in again.x509_authorities] == [
        AuthorityState.RETIRED,
        AuthorityState.ACTIVE,
    ]
    assert again.sequence == 3

    # Once the old CA expires it leaves the bundle at once, and pruning removes its files.
    clock.now = T0 + timedelta(days=11)
    assert ca.bundle().x509_authorities == (prepared.certificate,)
    assert ca.prune_expired() is True
    assert ca.sequence == 4
    assert [a.id for a in ca.x509_authorities] == [prepared.id]
    assert not list((tmp_path / "ca").glob(f"x509-{old.id}*"))
    assert ca.prune_expired() is False


def test_rotation_transitions_are_checked(tmp_path: Path) -> None:
    ca = CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))
    active = ca.active_x509_authority()
    with pytest.raises(CAStateError, match="not prepared"):
        ca.activate_x509_authority(active.id)
    with pytest.raises(CAStateError, match="no authority with id"):
        ca.activate_x509_authority("0" * 32)
    ca.prepare_x509_authority()
    with pytest.raises(CAStateError, match="already prepared"):
        ca.prepare_x509_authority()
    assert ca.sequence == 2  # refused transitions change nothing


def test_jwt_rotation(tmp_path: Path) -> None:
    ca = CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))
    old_kid = ca.active_jwt_authority().kid
    new = ca.prepare_jwt_authority()
    assert set(ca.bundle().jwt_authorities) == {old_kid, new.kid}
    ca.activate_jwt_authority(new.kid)
    token = ca.sign_jwt_svid(AGENT, "svc")
    header = json.loads(_b64decode(token.split(".")[0]))
    assert header["kid"] == new.kid
    assert set(ca.bundle().jwt_authorities) == {old_kid, new.kid}
    assert ca.sequence == 3
    again = CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))
    assert again.active_jwt_authority().kid == new.kid


def test_a_second_process_that_rotated_is_detected(tmp_path: Path) -> None:
    one = CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))
    two = CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))
    one.prepare_x509_authority()
    with pytest.raises(CAStateError, match="another process rotated it"):
        two.prepare_x509_authority()


def test_bundle_round_trips_through_the_spiffe_format(tmp_path: Path) -> None:
    ca = CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))
    bundle = ca.bundle()
    parsed = Bundle.parse(bundle.marshal(), TD)
    assert parsed == bundle
    assert parsed.sequence == 1 and parsed.refresh_hint == 300
    assert parsed.x509_authorities == (ca.active_x509_authority().certificate,)
    kid = ca.active_jwt_authority().kid
    assert parsed.jwt_authorities[kid] == ca.active_jwt_authority().public_key
    assert bundle.x509_pem() == ca.trust_anchors_pem()


def _b64decode(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
