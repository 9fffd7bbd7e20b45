"""What the CA issues passes the agent-side SPIFFE validators in mesh.svid.

The validators are written from the specs independently of the CA; each SVID
kind the CA makes (agent, registry, operator, JWT) must pass them against the
bundle the CA publishes, across a CA rotation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mesh.bundle import Bundle
from mesh.spiffeid import SpiffeID
from mesh.svid import SVIDError, parse_and_validate_jwt_svid, verify_x509svid
from registry.ca import CertificateAuthority

TD = "example.org"
AGENT = "spiffe://example.org/agent/3J98t1WpEZ73CNmQviecrnyiWrnq"
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
    return request.public_bytes(serialization.Encoding.PEM)


def published(ca: CertificateAuthority) -> Bundle:
    # A relying party sees the bundle through its wire format, not the CA's objects.
    return Bundle.parse(ca.bundle().marshal(), TD)


def test_every_x509_svid_kind_validates(tmp_path: Path) -> None:
    ca = CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))
    bundle = published(ca)
    assert verify_x509svid(ca.issue_x509_svid(csr(), AGENT), bundle, T0) == SpiffeID.parse(AGENT)
    serving = ca.issue_serving_certificate(["registry.example.org"])
    assert str(verify_x509svid(list(serving.chain), bundle, T0)) == "spiffe://example.org/registry"
    operator = ca.issue_operator_certificate("alice")
    assert str(verify_x509svid(list(operator.chain), bundle, T0)) == (
        "spiffe://example.org/operator/alice"
    )


def test_x509_svids_validate_across_a_rotation(tmp_path: Path) -> None:
    clock = Clock(T0)
    ca = CertificateAuthority.open(tmp_path, TD, clock=clock)
    before = ca.issue_x509_svid(csr(), AGENT)
    ca.activate_x509_authority(ca.prepare_x509_authority().id)
    after = ca.issue_x509_svid(csr(), AGENT)
    bundle = published(ca)
    assert bundle.sequence == 3
    verify_x509svid(before, bundle, T0)
    verify_x509svid(after, bundle, T0)
    # The bundle from before the rotation does not know the new CA.
    other = CertificateAuthority.open(tmp_path / "other", TD, clock=clock)
    with pytest.raises(SVIDError):
        verify_x509svid(after, published(other), T0)


def test_jwt_svid_validates(tmp_path: Path) -> None:
    ca = CertificateAuthority.open(tmp_path, TD, clock=Clock(T0))
    token = ca.sign_jwt_svid(AGENT, ["spiffe://example.org/gateway", "other"])
    svid = parse_and_validate_jwt_svid(token, published(ca), "spiffe://example.org/gateway", now=T0)
    assert str(svid.spiffe_id) == AGENT
    assert svid.kid == ca.active_jwt_authority().kid
    assert svid.expiry == T0 + timedelta(minutes=5)
    with pytest.raises(SVIDError):
        parse_and_validate_jwt_svid(token, published(ca), "someone-else", now=T0)
    with pytest.raises(SVIDError):
        parse_and_validate_jwt_svid(token, published(ca), "other", now=T0 + timedelta(minutes=10))
