"""Registry CA throughput on one core: X.509-SVIDs from CSRs, JWT-SVID signatures.

Prints one flat JSON object. Rates swing run to run; compare ratios in one run.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mesh.spiffeid import SpiffeID
from registry.ca import CertificateAuthority
from registry.ca.x509svid import validate_csr

AGENT = "spiffe://bench.example/agent/3J98t1WpEZ73CNmQviecrnyiWrnq"


def rate(fn: Callable[[], object], seconds: float = 1.5) -> float:
    fn()  # warm up
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            fn()
        count += 50
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ca = CertificateAuthority.open(tmp, "bench.example")
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(AGENT)]),
                critical=False,
            )
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.DER)
        )
        sid = SpiffeID.parse(AGENT)
        results = {
            "x509_svid_issue_from_csr_per_s": rate(lambda: ca.issue_x509_svid(csr, sid)),
            "csr_validate_per_s": rate(lambda: validate_csr(csr, sid)),
            "jwt_svid_sign_per_s": rate(lambda: ca.sign_jwt_svid(sid, "spiffe://bench.example/x")),
            "serving_cert_issue_per_s": rate(lambda: ca.issue_serving_certificate(), 0.5),
            "bundle_marshal_per_s": rate(lambda: ca.bundle().marshal(), 0.5),
        }
    print(json.dumps({k: round(v, 1) for k, v in results.items()}))


if __name__ == "__main__":
    main()
