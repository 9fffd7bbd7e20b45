"""Pytest fixtures that run the real registry: TLS on a free 127.0.0.1 port, a temp data dir.

* ``registry`` — module-scoped, SQLite.
* ``registry_pg`` — module-scoped, a fresh PostgreSQL database (skips without PostgreSQL).
* ``any_registry`` — module-scoped, parametrised over both.

Each yields a :class:`RunningRegistry`: its address, bundle, operator credential,
channel helpers, and :meth:`RunningRegistry.register` which registers an agent
with the generated stubs (no client library involved).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mesh.keyhistory import KeyHistory
from mesh.keys import IdentityKey
from mesh.registration import sign_proof
from mesh.v1 import (
    agents_pb2_grpc,
    registration_pb2,
    registration_pb2_grpc,
    svid_pb2_grpc,
    tokens_pb2,
    tokens_pb2_grpc,
)
from registry import logs
from registry.config import Config
from registry.server import RegistryServer

TRUST_DOMAIN = "test.mesh"


def make_csr(
    key: ec.EllipticCurvePrivateKey | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(
        key, hashes.SHA256()
    )
    return key, csr.public_bytes(serialization.Encoding.DER)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class Agent:
    """A registered agent as the tests hold it: its keys, DID and SVID."""

    registry: RunningRegistry
    identity: IdentityKey
    did: str
    spiffe_id: str
    tls_key: ec.EllipticCurvePrivateKey
    chain_der: list[bytes]
    response: registration_pb2.RegisterResponse
    history: KeyHistory | None = None
    _channels: list[grpc.Channel] = field(default_factory=list)

    def chain_pem(self) -> bytes:
        return b"".join(
            x509.load_der_x509_certificate(d).public_bytes(serialization.Encoding.PEM)
            for d in self.chain_der
        )

    def channel(self) -> grpc.Channel:
        ch = self.registry.channel(_pem_key(self.tls_key), self.chain_pem())
        self._channels.append(ch)
        return ch


class RunningRegistry:
    """A registry server running in a background thread with its own event loop."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.server = RegistryServer(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._channels: list[grpc.Channel] = []

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(60)
        self.address = f"127.0.0.1:{self.server.port}"
        self.mtls_address = f"127.0.0.1:{self.server.mtls_port}"
        self.bundle_pem = self.server.bundle_path.read_bytes()
        assert self.server.operator is not None
        self.operator_cert = self.server.operator.cert_path.read_bytes()
        self.operator_key = self.server.operator.key_path.read_bytes()

    def stop(self) -> None:
        for ch in self._channels:
            ch.close()
        asyncio.run_coroutine_threadsafe(self.server.stop(0.5), self._loop).result(60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def run(self, coro: Any) -> Any:
        """Run a coroutine on the server's loop (for poking at server internals)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)

    @property
    def store(self) -> Any:
        return self.server.store

    @property
    def ca(self) -> Any:
        return self.server.ca

    # -- channels ----------------------------------------------------------------------

    def channel(self, key_pem: bytes | None = None, chain_pem: bytes | None = None) -> grpc.Channel:
        creds = grpc.ssl_channel_credentials(
            root_certificates=self.bundle_pem, private_key=key_pem, certificate_chain=chain_pem
        )
        address = self.mtls_address if key_pem is not None else self.address
        ch = grpc.secure_channel(address, creds)
        self._channels.append(ch)
        return ch

    def anonymous(self) -> grpc.Channel:
        return self.channel()

    def operator(self) -> grpc.Channel:
        return self.channel(self.operator_key, self.operator_cert)

    # -- stubs ----------------------------------------------------------------------------

    def registration(self, ch: grpc.Channel | None = None) -> Any:
        return registration_pb2_grpc.RegistrationServiceStub(ch or self.anonymous())

    def svids(self, ch: grpc.Channel) -> Any:
        return svid_pb2_grpc.SVIDServiceStub(ch)

    def agents(self, ch: grpc.Channel) -> Any:
        return agents_pb2_grpc.AgentServiceStub(ch)

    def tokens(self, ch: grpc.Channel | None = None) -> Any:
        return tokens_pb2_grpc.JoinTokenServiceStub(ch or self.operator())

    # -- helpers --------------------------------------------------------------------------

    def join_token(self, name: str = "tests/agent", ttl: int = 0) -> str:
        response = self.tokens().CreateJoinToken(
            tokens_pb2.CreateJoinTokenRequest(agent_name=name, ttl_seconds=ttl)
        )
        return str(response.token)

    def register_request(
        self,
        identity: IdentityKey,
        token: str,
        *,
        csr: bytes | None = None,
        history: KeyHistory | None = None,
        metadata: dict[str, str] | None = None,
    ) -> tuple[registration_pb2.RegisterRequest, ec.EllipticCurvePrivateKey | None]:
        key = None
        if csr is None:
            key, csr = make_csr()
        challenge = self.registration().GetChallenge(registration_pb2.GetChallengeRequest())
        proof = sign_proof(identity, challenge.trust_domain, challenge.nonce, csr)
        request = registration_pb2.RegisterRequest(
            join_token=token,
            public_key=identity.public_key,
            challenge=challenge.nonce,
            proof=proof,
            csr=csr,
            metadata=metadata or {},
            key_history=history.to_json() if history is not None else "",
        )
        return request, key

    def register(
        self,
        name: str = "tests/agent",
        *,
        identity: IdentityKey | None = None,
        with_history: bool = True,
        metadata: dict[str, str] | None = None,
    ) -> Agent:
        from datetime import UTC, datetime

        identity = identity or IdentityKey.generate()
        history = KeyHistory.incept(identity, datetime.now(UTC)) if with_history else None
        token = self.join_token(name)
        request, key = self.register_request(identity, token, history=history, metadata=metadata)
        response = self.registration().Register(request)
        assert key is not None
        return Agent(
            registry=self,
            identity=identity,
            did=response.did,
            spiffe_id=response.spiffe_id,
            tls_key=key,
            chain_der=list(response.svid.cert_chain),
            response=response,
            history=history,
        )


def _start(tmp: Path, database_url: str = "") -> RunningRegistry:
    config = Config(
        data_dir=tmp / "data",
        listen="127.0.0.1:0",
        database_url=database_url,
        trust_domain=TRUST_DOMAIN,
        worker_threads=4,
        log_level="warning",
    )
    logs.configure("console", "warning")
    running = RunningRegistry(config)
    running.start()
    return running


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    running = _start(tmp_path_factory.mktemp("registry"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def registry_pg(
    tmp_path_factory: pytest.TempPathFactory, postgres_admin_url: str
) -> Iterator[RunningRegistry]:
    import psycopg

    name = f"trustmesh_srv_{uuid.uuid4().hex[:12]}"
    dsn = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    running = _start(
        tmp_path_factory.mktemp("registry_pg"),
        f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
    )
    try:
        yield running
    finally:
        running.stop()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def any_registry(request: pytest.FixtureRequest) -> RunningRegistry:
    if request.param == "sqlite":
        return request.getfixturevalue("registry")  # type: ignore[no-any-return]
    return request.getfixturevalue("registry_pg")  # type: ignore[no-any-return]
