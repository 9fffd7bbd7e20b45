"""Two CA rotations on a running registry, with real TLS handshakes between agents throughout.

Agents are :class:`mesh.client.AgentClient` over real gRPC; they pick up each
new bundle without a restart (``refresh_bundle``, what the rotator does on its
refresh hint). Between every step the two agents complete a real mutual-TLS
handshake (OpenSSL through :mod:`ssl`, each side trusting only its own
``bundle.0.pem`` and checking the peer's SPIFFE ID), and each renews over
mutual TLS with the registry. A third agent that never refreshes its bundle
is the control: it must fail once the new CA signs.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from mesh.client import AgentClient, CredentialRotator, OperatorClient, TLSConfig
from tests.fixtures_registry import RunningRegistry, _start


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    running = _start(Path(tmp_path_factory.mktemp("rotation-ca")))
    try:
        yield running
    finally:
        running.stop()


def _context(client: AgentClient, server: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # SPIFFE: the peer is named by its URI SAN, checked below
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=client.dir.read_bundle().decode())
    ctx.load_cert_chain(client.dir.svid, client.dir.svid_key)
    return ctx


def _uri(der: bytes | None) -> str:
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return str(san.get_values_for_type(x509.UniformResourceIdentifier)[0])


def handshake(server: AgentClient, client: AgentClient) -> None:
    """A real mutual-TLS handshake over a socket pair; raises ssl.SSLError on failure."""
    left, right = socket.socketpair()
    failure: list[BaseException] = []
    seen: list[str] = []

    def serve() -> None:
        try:
            with _context(server, True).wrap_socket(left, server_side=True) as tls:
                seen.append(_uri(tls.getpeercert(binary_form=True)))
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            failure.append(exc)
            left.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with _context(client, False).wrap_socket(right) as tls:
            assert _uri(tls.getpeercert(binary_form=True)) == server.info.spiffe_id
            assert tls.recv(2) == b"ok"
    finally:
        right.close()
        thread.join(10)
    if failure:
        raise failure[0]
    assert seen == [client.info.spiffe_id]


def both_ways(a: AgentClient, b: AgentClient) -> None:
    handshake(a, b)
    handshake(b, a)


def issuer_of(client: AgentClient) -> str:
    return client.svid.leaf.issuer.rfc4514_string()


def test_two_ca_rotations_without_a_failed_handshake(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    def agent(name: str) -> AgentClient:
        client = AgentClient(registry.address, tmp_path / name, registry.bundle_pem,
                             mtls_registry=registry.mtls_address)
        client.register(registry.join_token(f"ca/{name}"))
        return client

    a, b, stale = agent("a"), agent("b"), agent("stale")
    operator = OperatorClient(
        registry.address,
        tls=TLSConfig(registry.bundle_pem, registry.operator_cert, registry.operator_key),
        mtls_registry=registry.mtls_address,
    )
    rotator = CredentialRotator(a, watch=False)  # refreshes the bundle on its first pass
    issuers = {issuer_of(a)}
    both_ways(a, b)
    both_ways(a, stale)
    for round_ in range(2):
        prepared = operator.rotate_ca()
        assert sum(x.state == "prepared" for x in prepared.authorities) == 2
        # The new CA is in the bundle long before it signs; agents pick it up, no restart.
        rotator._bundle_at = None
        rotator.check()
        assert b.refresh_bundle() and not b.refresh_bundle()
        both_ways(a, b)
        if round_ == 0:
            both_ways(a, stale)  # nothing signs with the new CA yet
        # Propagated (both agents hold it): it signs from now on.
        active = operator.rotate_ca(activate=True, force=True)
        assert sum(x.state == "active" for x in active.authorities) == 2
        a.renew()  # a has a new-CA SVID; b still the old one
        assert issuer_of(a) not in issuers
        issuers.add(issuer_of(a))
        both_ways(a, b)
        b.renew()
        both_ways(a, b)
        assert a.trust_bundle().sequence == active.sequence  # the registry's new serving cert
        if round_ == 0:
            # The control: without the new bundle, a peer refuses the new CA's SVIDs.
            with pytest.raises(ssl.SSLError):
                handshake(a, stale)
    assert len(issuers) == 3
    with registry.store.read() as view:
        changes = [e for e in view.events.since(0, limit=10_000) if e.type == "bundle.changed"]
    assert len(changes) == 4
    for client in (a, b, stale):
        client.close()
    operator.close()
