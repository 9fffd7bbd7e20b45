"""The registry's gRPC server (grpc.aio, TLS always, client certificates optional).

Start-up, in order: data directory (0700), CA, store schema upgrade,
``DIR/bundle.pem`` (written by the CA), the operator credential
(``DIR/operator/operator.pem`` + ``operator.key``, ``spiffe://<td>/operator/admin``,
recorded as a principal), the serving certificate (DNS/IP SANs of the listen
address plus localhost and 127.0.0.1), then the services, health and
reflection, and Prometheus metrics on their own port.

The serving certificate is served through grpcio's dynamic server credentials:
a background task re-issues it (and the operator credential) when a third of
its life remains, and new connections get the new one; the CA's trust anchors
are refreshed the same way.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from mesh.spiffeid import TrustDomain
from mesh.v1 import (
    agents_pb2,
    agents_pb2_grpc,
    events_pb2,
    registration_pb2,
    registration_pb2_grpc,
    rotation_pb2,
    rotation_pb2_grpc,
    svid_pb2,
    svid_pb2_grpc,
    tokens_pb2,
    tokens_pb2_grpc,
    trust_pb2,
    trust_pb2_grpc,
    verify_pb2,
    verify_pb2_grpc,
)
from registry.auth import Authenticator
from registry.ca.certificate_authority import CertificateAuthority
from registry.ca.schedule import SchedulePolicy
from registry.config import Config
from registry.events.hub import EventHub
from registry.events.watch import EventService, add_event_service
from registry.filelock import FileLock
from registry.health import StoreHealth
from registry.interceptor import GuardInterceptor
from registry.logs import get_logger
from registry.metrics import Metrics
from registry.replica import Replication, replica_key
from registry.rotation.ca import CARotator
from registry.scheduler import Scheduler
from registry.scoring import Recomputer
from registry.services._challenge import load_or_create_key
from registry.services._runtime import Runtime
from registry.services.agents import AgentService
from registry.services.registration import RegistrationService
from registry.services.rotation import CAService, KeyService
from registry.services.svid import SVIDService
from registry.services.tokens import JoinTokenService
from registry.services.trust import TrustService
from registry.services.verify import VerifyService
from registry.store import Store, StoreOptions, open_store
from registry.workers import Siblings, Worker, announce_ready, metrics_listen_for

CHALLENGE_KEY = "challenge.key"
OPERATOR_NAME = "admin"
OPERATOR_DIR = "operator"
OPERATOR_CERT = "operator.pem"
OPERATOR_KEY = "operator.key"
OPERATOR_TTL = timedelta(days=30)
MAX_MESSAGE_BYTES = 1024 * 1024

_log = get_logger("registry.server")

SERVICE_NAMES = (
    registration_pb2.DESCRIPTOR.services_by_name["RegistrationService"].full_name,
    svid_pb2.DESCRIPTOR.services_by_name["SVIDService"].full_name,
    agents_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,
    tokens_pb2.DESCRIPTOR.services_by_name["JoinTokenService"].full_name,
    trust_pb2.DESCRIPTOR.services_by_name["TrustService"].full_name,
    events_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
    verify_pb2.DESCRIPTOR.services_by_name["VerifyService"].full_name,
    rotation_pb2.DESCRIPTOR.services_by_name["KeyService"].full_name,
    rotation_pb2.DESCRIPTOR.services_by_name["CAService"].full_name,
)


@dataclass(frozen=True)
class OperatorCredential:
    cert_path: Path
    key_path: Path
    spiffe_id: str


class RegistryServer:
    """One registry process. ``await start()``, then ``await wait()`` or ``await stop()``."""

    def __init__(self, config: Config, worker: Worker | None = None) -> None:
        self.config = config
        #: This process's place among ``--workers`` processes (None: the only one).
        self.worker = worker
        self.trust_domain = TrustDomain.parse(config.trust_domain)
        self.metrics = Metrics()
        self.port = 0
        self.mtls_port = 0
        self.metrics_port = 0
        self.ca: CertificateAuthority | None = None
        self.store: Store | None = None
        self.operator: OperatorCredential | None = None
        self._server: grpc.aio.Server | None = None
        self._health: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._metrics_server: Any = None
        self._challenge_key: bytes | None = None
        # Trust and events: the recompute (shared by the scheduler and TrustService),
        # the event fan-out to Watch streams, and the scheduled jobs.
        self.recomputer: Recomputer | None = None
        self.hub: EventHub | None = None
        self.scheduler: Scheduler | None = None
        # CA rotation: scheduled (a scheduler job) and operator-driven (CAService).
        self.ca_rotator: CARotator | None = None
        self._unlisten: Any = None
        # Replicas over PostgreSQL (shared secrets, leadership, LISTEN) and the
        # database-following health.
        self.replication: Replication | None = None
        # Other worker processes on this host (``--workers``): wake-ups, leadership, CA.
        self.siblings: Siblings | None = None
        self.store_health: StoreHealth | None = None
        # (chain PEM, key PEM, roots PEM, expiry) served to new connections.
        self._tls_lock = threading.Lock()
        self._tls: tuple[bytes, bytes, bytes, datetime] | None = None
        # Per listener: has the configuration changed since that listener last fetched it?
        self._tls_changed = [False, False]

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    @property
    def bundle_path(self) -> Path:
        return self.config.data_dir / "bundle.pem"

    # -- start / stop -----------------------------------------------------------------

    async def start(self) -> None:
        config = self.config
        self._executor = ThreadPoolExecutor(
            max_workers=config.worker_threads, thread_name_prefix="registry"
        )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._prepare)
        assert self.ca is not None and self.store is not None
        runtime = Runtime(
            config=config,
            ca=self.ca,
            store=self.store,
            metrics=self.metrics,
            executor=self._executor,
            challenge_key=self._challenge_key,
        )

        async def in_thread(fn: Any, *args: Any) -> Any:
            return await loop.run_in_executor(self._executor, fn, *args)

        authenticator = Authenticator(self.trust_domain, self.store, in_thread)
        server = grpc.aio.server(
            interceptors=[GuardInterceptor(authenticator, self.metrics)],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                # Workers share the ports; a lone registry must not share them by mistake.
                ("grpc.so_reuseport", 1 if self.worker is not None else 0),
            ],
        )
        registration_pb2_grpc.add_RegistrationServiceServicer_to_server(
            RegistrationService(runtime), server
        )
        svid_pb2_grpc.add_SVIDServiceServicer_to_server(SVIDService(runtime), server)
        agents_pb2_grpc.add_AgentServiceServicer_to_server(AgentService(runtime), server)
        tokens_pb2_grpc.add_JoinTokenServiceServicer_to_server(JoinTokenService(runtime), server)
        self.recomputer = Recomputer(self.store, _trust_policy(config))
        self.hub = EventHub(self.store)
        await self.hub.start()
        hub = self.hub
        assert self.replication is not None
        self.replication.start(
            ca=self.ca, wake=hub.notify, on_ca_change=self._issue_serving_certificate
        )
        if self.worker is not None:
            self.siblings = Siblings(
                config.data_dir, self.worker, replicated=self.replication.enabled
            )
            self.siblings.start(
                ca=self.ca, wake=hub.notify, on_ca_change=self._issue_serving_certificate
            )
        siblings = self.siblings

        def committed(_seq: int) -> None:
            hub.notify()
            if siblings is not None:
                siblings.notify()

        self._unlisten = self.store.add_commit_listener(committed)
        trust_pb2_grpc.add_TrustServiceServicer_to_server(
            TrustService(runtime, self.recomputer), server
        )
        add_event_service(EventService(runtime, hub), server)
        self.verify = VerifyService(runtime)
        verify_pb2_grpc.add_VerifyServiceServicer_to_server(self.verify, server)
        self.ca_rotator = CARotator(
            self.ca,
            self.store,
            SchedulePolicy(propagation=timedelta(seconds=config.x509_svid_ttl_seconds)),
            on_change=self._issue_serving_certificate,
        )
        rotation_pb2_grpc.add_KeyServiceServicer_to_server(KeyService(runtime), server)
        rotation_pb2_grpc.add_CAServiceServicer_to_server(
            CAService(runtime, self.ca_rotator), server
        )
        self._health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME),
            server,
        )
        # grpcio offers no "client certificate optional" mode (require_client_auth=False
        # means the certificate is never requested), so the registry listens twice:
        # TLS for the public calls, mutual TLS for everything authenticated.
        public = grpc.dynamic_ssl_server_credentials(
            self._tls_configuration(),
            self._fetch_tls_configuration,
            require_client_authentication=False,
        )
        mutual = grpc.dynamic_ssl_server_credentials(
            self._tls_configuration(),
            self._fetch_tls_configuration_mtls,
            require_client_authentication=True,
        )
        self.port = server.add_secure_port(config.listen, public)
        self.mtls_port = server.add_secure_port(config.effective_mtls_listen, mutual)
        if self.port == 0 or self.mtls_port == 0:
            raise OSError(f"cannot listen on {config.listen} and {config.effective_mtls_listen}")
        await server.start()
        self._server = server
        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        store = self.store

        async def ping() -> None:
            await loop.run_in_executor(self._executor, store.ping)

        self.store_health = StoreHealth(
            self._health, SERVICE_NAMES, ping, interval=config.health_check_interval_seconds
        )
        self.store_health.start()
        self.metrics.watch_store(self.store)
        metrics_listen = metrics_listen_for(config.metrics_listen, self.worker)
        if metrics_listen:
            host, _, port = metrics_listen.rpartition(":")
            self._metrics_server, _thread = self.metrics.serve(host.strip("[]"), int(port))
            self.metrics_port = self._metrics_server.server_port
        self._renewer = asyncio.create_task(self._renew_loop())
        self.scheduler = Scheduler(
            self.recomputer,
            self._executor,
            recompute_interval=config.trust_recompute_interval_seconds,
            event_retention=float(config.event_retention_seconds),
            ca_rotator=self.ca_rotator,
            leader=self._is_leader,
        )
        self.scheduler.start()
        _log.info(
            "registry.started",
            listen=config.listen,
            port=self.port,
            mtls_listen=config.effective_mtls_listen,
            mtls_port=self.mtls_port,
            trust_domain=self.trust_domain.name,
            data_dir=str(config.data_dir),
            database=self.store.dialect,
            metrics_port=self.metrics_port or None,
        )

    def _is_leader(self) -> bool:
        """Should this process run the scheduled jobs now?"""
        assert self.replication is not None
        siblings = self.siblings
        return self.replication.is_leader() and (siblings is None or siblings.is_leader())

    async def wait(self) -> None:
        assert self._server is not None
        await self._server.wait_for_termination()

    async def stop(self, grace: float | None = None) -> None:
        grace = self.config.grace_seconds if grace is None else grace
        if self.store_health is not None:
            await self.store_health.stop()
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self._renewer is not None:
            self._renewer.cancel()
            try:
                await self._renewer
            except asyncio.CancelledError:
                pass
        if self.scheduler is not None:
            self.scheduler.shutdown()
        if self.hub is not None:
            # Watch streams end now with a resumable UNAVAILABLE (clients resume
            # elsewhere from their last sequence); unary calls get the grace period.
            self.hub.close_streams()
        if self._server is not None:
            await self._server.stop(grace)
        if getattr(self, "verify", None) is not None:
            self.verify.close()
        if self.replication is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.replication.stop)
        if self.siblings is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.siblings.stop)
        if self.recomputer is not None:
            self.recomputer.close()
        if self._unlisten is not None:
            self._unlisten()
        if self.hub is not None:
            await self.hub.stop()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self.store is not None:
            self.store.close()
        _log.info("registry.stopped")

    # -- preparation (a worker thread) -----------------------------------------------

    def _prepare(self) -> None:
        config = self.config
        make_private_dir(config.data_dir)
        passphrase = None
        if config.ca_passphrase_env:
            passphrase = os.environ.get(config.ca_passphrase_env) or None
        self.store = open_store(
            config.database_url or None,
            config.data_dir,
            options=StoreOptions(
                sqlite_synchronous=config.sqlite_synchronous.upper(),
                pool_size=config.database_pool_size if self._postgres() else None,
                max_overflow=config.database_max_overflow if self._postgres() else None,
            ),
        )
        self.store.upgrade()
        self.replication = Replication(self.store, config.data_dir, replica_key(config))
        # Replicas share the CA, the challenge key and the operator key: the first
        # one to start creates them, the others load them from the database.
        with self.replication.bootstrap():
            self.ca = CertificateAuthority.open(
                config.data_dir, self.trust_domain, passphrase=passphrase
            )
            self._challenge_key = load_or_create_key(config.data_dir / CHALLENGE_KEY)
            self.operator = self._ensure_operator()
        self._issue_serving_certificate()

    def _postgres(self) -> bool:
        return self.config.database_url.split(":", 1)[0].startswith("postgres")

    def _issue_serving_certificate(self) -> None:
        assert self.ca is not None
        issued = self.ca.issue_serving_certificate(
            self.config.serving_hosts(),
            ttl=timedelta(seconds=self.config.serving_cert_ttl_seconds),
        )
        with self._tls_lock:
            self._tls = (
                issued.chain_pem(),
                issued.private_key_pem(),
                self.ca.trust_anchors_pem(),
                issued.leaf.not_valid_after_utc,
            )
            self._tls_changed = [True, True]
        self.metrics.serving_cert_expiry.set(issued.leaf.not_valid_after_utc.timestamp())

    def _tls_configuration(self) -> Any:
        with self._tls_lock:
            assert self._tls is not None
            chain, key, roots, _ = self._tls
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=roots)

    def _fetch(self, listener: int) -> Any:
        # Called by grpc for new connections: None keeps the current configuration.
        if not self._tls_changed[listener]:
            return None
        with self._tls_lock:
            self._tls_changed[listener] = False
        return self._tls_configuration()

    def _fetch_tls_configuration(self) -> Any:
        return self._fetch(0)

    def _fetch_tls_configuration_mtls(self) -> Any:
        return self._fetch(1)

    def _ensure_operator(self) -> OperatorCredential:
        """The bootstrap operator credential, kept (same key) across restarts and renewals."""
        assert self.ca is not None and self.store is not None
        directory = self.config.data_dir / OPERATOR_DIR
        make_private_dir(directory)
        # Workers share the credential: one of them at a time creates or renews it.
        lock = FileLock(directory / ".lock")
        try:
            lock.acquire()
            return self._ensure_operator_locked(directory)
        finally:
            lock.close()

    def _ensure_operator_locked(self, directory: Path) -> OperatorCredential:
        assert self.ca is not None and self.store is not None
        cert_path, key_path = directory / OPERATOR_CERT, directory / OPERATOR_KEY
        key = _load_key(key_path)
        if key is None:
            key = ec.generate_private_key(ec.SECP256R1())
            _write_private(
                key_path,
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            )
        if _needs_renewal(cert_path, self.ca.trust_anchors(), OPERATOR_TTL):
            csr = (
                x509.CertificateSigningRequestBuilder()
                .subject_name(x509.Name([]))
                .sign(key, _sha256())
            )
            issued = self.ca.issue_operator_certificate(
                OPERATOR_NAME,
                csr=csr.public_bytes(serialization.Encoding.DER),
                ttl=OPERATOR_TTL,
            )
            _write_private(cert_path, issued.chain_pem(), mode=0o600)
        spiffe_id = f"spiffe://{self.trust_domain.name}/{OPERATOR_DIR}/{OPERATOR_NAME}"
        credential = hashlib.sha256(
            key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).hexdigest()
        with self.store.transaction() as tx:
            if tx.principals.find_by_name("operator", OPERATOR_NAME) is None:
                tx.principals.create(
                    kind="operator", name=OPERATOR_NAME, roles=["admin"],
                    credential_hash=credential,
                )
                tx.audit.append("registry", "principal.create", spiffe_id, {"roles": ["admin"]})
        return OperatorCredential(cert_path, key_path, spiffe_id)

    # -- renewal ------------------------------------------------------------------------

    async def _renew_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(60)
            try:
                await loop.run_in_executor(self._executor, self._renew_if_due)
            except Exception as exc:  # keep serving with the current certificate
                _log.error("registry.renewal_failed", error=str(exc))

    def _renew_if_due(self) -> None:
        assert self._tls is not None and self.ca is not None
        now = datetime.now(UTC)
        expiry = self._tls[3]
        remaining = expiry - now
        roots = self.ca.trust_anchors_pem()
        if remaining < timedelta(seconds=self.config.serving_cert_ttl_seconds / 3) or (
            roots != self._tls[2]
        ):
            self._issue_serving_certificate()
            _log.info("registry.serving_certificate_renewed")
        self._ensure_operator()
        self._purge_challenges()

    def _purge_challenges(self) -> None:
        """Drop expired registration challenges (used or not): they can never be used again."""
        assert self.store is not None
        with self.store.transaction() as tx:
            purged = tx.challenges.purge_expired()
        if purged:
            _log.debug("registry.challenges_purged", count=purged)


def _trust_policy(config: Config) -> Any:
    from trust import Policy

    if config.trust_policy_file:
        return Policy.load(config.trust_policy_file)
    return Policy.default()


def make_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        os.chmod(path, 0o700)


def _write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an EC private key; delete it to get a new one")
    return key


def _needs_renewal(path: Path, anchors: list[x509.Certificate], ttl: timedelta) -> bool:
    try:
        chain = x509.load_pem_x509_certificates(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return True
    leaf = chain[0]
    if leaf.issuer not in {a.subject for a in anchors}:
        return True
    return leaf.not_valid_after_utc - datetime.now(UTC) < ttl / 3


def _sha256() -> Any:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def settle_collector() -> None:
    """Garbage collection for a serving process, once it has started.

    What startup built (schema, CA, descriptors, pools) lives as long as the
    process: frozen, full collections stop re-walking it (they took ~100 ms,
    stalling every stream). Watch fan-out allocates a few objects per message;
    a young generation of 10,000 instead of 700 collects a fraction as often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


async def serve(config: Config, worker: Worker | None = None) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully."""
    import signal

    server = RegistryServer(config, worker)
    await server.start()
    settle_collector()
    announce_ready()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(server.wait())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    _log.info("registry.stopping")
    await server.stop()
    waiter.cancel()
    stopper.cancel()
