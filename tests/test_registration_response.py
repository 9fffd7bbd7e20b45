"""The registration response is built in place (the SVID filled into the response's
own field): it must be the message the SVID service builds for the same leaf."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.timestamp_pb2 import Timestamp  # type: ignore[import-untyped]

from mesh.v1 import types_pb2
from registry.ca import CertificateAuthority
from registry.config import Config
from registry.metrics import Metrics
from registry.services._runtime import Runtime, timestamp
from registry.store import open_store


def test_a_filled_svid_is_the_svid_message_of_the_same_leaf(tmp_path: Path) -> None:
    ca = CertificateAuthority.open(tmp_path, "fill.mesh")
    runtime = Runtime(
        config=Config(trust_domain="fill.mesh", data_dir=tmp_path), ca=ca,
        store=open_store(None, tmp_path), metrics=Metrics(), executor=ThreadPoolExecutor(1),
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    leaf = ca.sign_x509_svid(csr, "spiffe://fill.mesh/agent/a")
    filled = types_pb2.X509SVID()
    runtime.fill_signed_svid(filled, leaf, "spiffe://fill.mesh/agent/a")
    assert filled == runtime.svid_pb([leaf.certificate(), leaf.issuer], "spiffe://fill.mesh/agent/a")
    assert list(filled.cert_chain) == [leaf.der]  # the CA certificate is a bundle authority
    assert filled.expires_at.ToDatetime(tzinfo=UTC) == leaf.not_valid_after_utc


def test_timestamps_match_the_protobuf_conversion() -> None:
    for at in (
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
        datetime(2031, 5, 6, 7, 8, 9, 5, tzinfo=timezone(timedelta(hours=-7))),
        datetime(2031, 5, 6, 7, 8, 9),  # naive: UTC
    ):
        expected = Timestamp()
        expected.FromDatetime(at)
        assert timestamp(at) == expected
