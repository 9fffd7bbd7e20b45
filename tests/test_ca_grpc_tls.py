"""The certificate profile works with grpcio's TLS (BoringSSL), mutual authentication.

A real grpc.aio server on 127.0.0.1 with the registry's serving certificate
and ``require_client_auth=True``; clients present X.509-SVIDs from CSRs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from registry.ca import CertificateAuthority

TD = "example.org"
AGENT = "spiffe://example.org/agent/3J98t1WpEZ73CNmQviecrnyiWrnq"
METHOD = "/test.Echo/Peer"


def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def svid(ca: CertificateAuthority, spiffe_id: str) -> tuple[bytes, bytes]:
    """(private key PEM, chain PEM) of an X.509-SVID made the way an agent makes one."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    chain = ca.issue_x509_svid(csr.public_bytes(serialization.Encoding.PEM), spiffe_id)
    return pem_key(key), b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)


async def _peer_uri(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    # The server reads the client's SVID from the TLS session, as the registry will.
    pem = context.auth_context()["x509_pem_cert"][0]
    leaf = x509.load_pem_x509_certificate(pem)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return san.value.get_values_for_type(x509.UniformResourceIdentifier)[0].encode()


async def _serve(ca: CertificateAuthority) -> tuple[grpc.aio.Server, int]:
    serving = ca.issue_serving_certificate()
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "test.Echo", {"Peer": grpc.unary_unary_rpc_method_handler(_peer_uri)}
    )
    server.add_generic_rpc_handlers((handler,))
    credentials = grpc.ssl_server_credentials(
        [(serving.private_key_pem(), serving.chain_pem())],
        root_certificates=ca.trust_anchors_pem(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, port


async def _call(target: str, root: bytes, key: bytes | None, chain: bytes | None) -> bytes:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=root, private_key=key, certificate_chain=chain
    )
    async with grpc.aio.secure_channel(target, credentials) as channel:
        call = channel.unary_unary(METHOD)
        result: bytes = await call(b"", timeout=10)
        return result


def test_mutual_tls_with_serving_certificate_and_client_svid(tmp_path: Path) -> None:
    ca = CertificateAuthority.open(tmp_path / "a", TD)
    stranger = CertificateAuthority.open(tmp_path / "b", TD)

    async def scenario() -> None:
        server, port = await _serve(ca)
        try:
            key, chain = svid(ca, AGENT)
            root = ca.trust_anchors_pem()
            # Host name checked against the DNS SAN, then against the IP SAN.
            assert await _call(f"localhost:{port}", root, key, chain) == AGENT.encode()
            assert await _call(f"127.0.0.1:{port}", root, key, chain) == AGENT.encode()
            operator = ca.issue_operator_certificate("alice")
            assert (
                await _call(
                    f"localhost:{port}", root, operator.private_key_pem(), operator.chain_pem()
                )
                == b"spiffe://example.org/operator/alice"
            )
            # No client certificate: the handshake is refused.
            with pytest.raises(grpc.aio.AioRpcError) as no_cert:
                await _call(f"localhost:{port}", root, None, None)
            assert no_cert.value.code() is grpc.StatusCode.UNAVAILABLE
            # A client SVID from another CA (same trust domain name): refused.
            other_key, other_chain = svid(stranger, AGENT)
            with pytest.raises(grpc.aio.AioRpcError) as foreign:
                await _call(f"localhost:{port}", root, other_key, other_chain)
            assert foreign.value.code() is grpc.StatusCode.UNAVAILABLE
            # A client that does not trust this CA refuses the server.
            with pytest.raises(grpc.aio.AioRpcError) as untrusted:
                await _call(f"localhost:{port}", stranger.trust_anchors_pem(), key, chain)
            assert untrusted.value.code() is grpc.StatusCode.UNAVAILABLE
        finally:
            await server.stop(None)

    asyncio.run(scenario())
