"""The agent's client: register at boot, keep key and SVID on disk, renew in the background.

Usage::

    client = AgentClient("127.0.0.1:8443", Path("/var/lib/agent"), Path("bundle.pem"))
    client.register(join_token)         # first boot; later boots: client.register()
    client.start_renewal()              # renews at half life, in a thread
    token = client.fetch_jwt_svid("billing-api")
    ...
    client.stop()

Everything the agent holds lives in its directory (see :mod:`mesh.agentdir`);
a new client over the same directory (a restart) picks it up. Registration and
renewal are retried as a whole on UNAVAILABLE (fresh challenge, fresh CSR) and
are idempotent: the same key always gets the same DID.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc

from mesh.agentdir import AGENT_FILE, AgentDir, AgentInfo
from mesh.client._internal import convert, flow
from mesh.client.channel import (
    DEFAULT_TIMEOUT,
    RegistryChannel,
    RetryPolicy,
    TLSConfig,
    mtls_addresses,
    parse_addresses,
)
from mesh.client.errors import (
    FailedPrecondition,
    PermissionDenied,
    ResponseError,
    Unauthenticated,
)
from mesh.client.operator import fetch_trust_bundle, ttl_seconds
from mesh.client.renewal import DEFAULT_JITTER, failure_delay, renewal_delay
from mesh.client.types import JWTSVID, Registration, TrustBundle
from mesh.errors import MeshError
from mesh.keyhistory import KeyHistory
from mesh.keys import IdentityKey, load_identity, read_key_history, save_identity
from mesh.svid import X509SVID
from mesh.v1 import registration_pb2, registration_pb2_grpc, svid_pb2, svid_pb2_grpc

Clock = Callable[[], datetime]
# wait(seconds) -> True when the client was stopped during the wait.
Wait = Callable[[float], bool]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Local:
    """What the agent directory holds, loaded for one registration."""

    key: IdentityKey
    history: KeyHistory | None
    info: AgentInfo | None
    created_key: bool


class AgentClient:
    """Registers one agent and keeps its X.509-SVID current. Thread-safe.

    ``registry``: ``HOST:PORT``, several of them (failover), or None to use
    the address recorded in ``agent.json`` by an earlier registration: the
    registry's TLS address. Calls that need the SVID go to its mutual-TLS
    address, ``mtls_registry``, by default each address's port + 1.
    ``bundle_pem``: the CA certificates to trust at bootstrap (the registry's
    ``bundle.pem``), as bytes or a path; None uses the directory's
    ``bundle.0.pem`` (kept current by every registration and renewal).
    ``clock`` and ``wait`` schedule background renewal (inject them in tests).
    """

    def __init__(
        self,
        registry: str | Sequence[str] | None,
        agent_dir: str | os.PathLike[str],
        bundle_pem: bytes | str | os.PathLike[str] | None = None,
        *,
        mtls_registry: str | Sequence[str] | None = None,
        passphrase: bytes | None = None,
        trust_domain: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        clock: Clock = utc_now,
        wait: Wait | None = None,
        jitter: float = DEFAULT_JITTER,
        rng: random.Random | None = None,
        on_renewed: Callable[[Registration], None] | None = None,
        on_error: Callable[[MeshError], None] | None = None,
    ) -> None:
        self.dir = AgentDir(agent_dir)
        info = self.dir.read_info()
        if registry is None:
            if info is None:
                raise MeshError(
                    f"{self.dir.path} holds no registered agent ({AGENT_FILE} is missing) and "
                    "no registry address was given",
                    hint=f"register it first: mesh register --registry HOST:PORT --bundle "
                    f"BUNDLE.pem --token TOKEN --out {self.dir.path}",
                )
            registry = info.registry
            if mtls_registry is None:
                mtls_registry = info.registry_mtls
        self.addresses = parse_addresses(registry)
        derived = mtls_addresses(self.addresses)
        self.mtls_addresses = parse_addresses(mtls_registry) if mtls_registry else derived
        # Recorded in agent.json only when it is not the convention (port + 1).
        self._mtls_note = ",".join(self.mtls_addresses) if self.mtls_addresses != derived else None
        root_pem = self._bootstrap_bundle(bundle_pem)
        self._passphrase = passphrase
        self._trust_domain = trust_domain
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._clock = clock
        self._stop = threading.Event()
        self._wait: Wait = wait or self._stop.wait
        self._jitter = jitter
        self._rng = rng or random.Random()
        self._on_renewed = on_renewed
        self._on_error = on_error
        self._lock = threading.RLock()
        self._public = RegistryChannel(
            self.addresses, TLSConfig(root_pem), timeout=timeout, retry=self._retry
        )
        self._mtls: RegistryChannel | None = None
        self._svid: X509SVID | None = None
        self._thread: threading.Thread | None = None
        self.last_error: MeshError | None = None

    def _bootstrap_bundle(self, bundle_pem: bytes | str | os.PathLike[str] | None) -> bytes:
        if isinstance(bundle_pem, bytes):
            return bundle_pem
        if bundle_pem is not None:
            path = Path(bundle_pem)
            try:
                return path.read_bytes()
            except OSError as exc:
                raise MeshError(
                    f"cannot read the trust bundle {path}: {exc.strerror}",
                    hint="pass the registry's bundle.pem (in the data dir of `mesh serve`)",
                ) from None
        if self.dir.bundle.exists():
            return self.dir.read_bundle()
        raise MeshError(
            f"no trust bundle: none given and {self.dir.bundle} does not exist",
            hint="pass --bundle with the registry's bundle.pem for the first registration",
        )

    # -- registration ------------------------------------------------------------------

    def register(
        self, join_token: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> Registration:
        """Register (with a join token) or re-register (with the key already in the directory).

        Makes the Ed25519 identity key if the directory has none (a join token
        is then required). Writes ``svid.0.pem``, ``svid.0.key``,
        ``bundle.0.pem`` and ``agent.json`` once the SVID has validated.
        """
        with self._lock:
            local = self._load_local(join_token)
            did = flow.expected_did(local.key, local.history, local.info)
            expected_td = self._trust_domain or (local.info.trust_domain if local.info else None)
            history_json = flow.history_to_send(local.history, join_token)
            timeout = self._public.timeout

            def op(ch: grpc.Channel) -> tuple[str, Any, Any]:
                stub = registration_pb2_grpc.RegistrationServiceStub(ch)
                challenge = stub.GetChallenge(
                    registration_pb2.GetChallengeRequest(), timeout=timeout
                )
                td = flow.check_challenge_domain(challenge, expected_td)
                svid_key, csr = flow.new_svid_key()
                request = flow.register_request(
                    local.key,
                    td,
                    challenge,
                    csr,
                    join_token=join_token,
                    key_history=history_json,
                    metadata=metadata,
                )
                return td, svid_key, stub.Register(request, timeout=timeout)

            td, svid_key, response = self._public.call(op)
            spiffe_id = flow.check_registration(response, did, td)
            accepted = flow.accept(
                response.svid, response.bundle, svid_key, expected_spiffe_id=spiffe_id
            )
            info = AgentInfo(
                did=did,
                spiffe_id=spiffe_id,
                trust_domain=td,
                registry=",".join(self.addresses),
                registry_mtls=self._mtls_note,
            )
            result = flow.commit(self.dir, accepted, info, created=bool(response.created))
            self._adopt(accepted)
            return result

    def _load_local(self, join_token: str | None) -> _Local:
        info = self.dir.read_info()
        if self.dir.has_identity():
            key = load_identity(self.dir.path, self._passphrase)
            return _Local(key, read_key_history(self.dir.path), info, created_key=False)
        if not join_token:
            raise MeshError(
                f"{self.dir.path} holds no identity key and no join token was given",
                hint="first registration needs a join token: `mesh token create --name NAME`",
            )
        if info is not None:
            raise MeshError(
                f"{self.dir.agent_json} names {info.did} but its identity key is missing",
                hint="restore identity.key from a backup, or register into an empty directory",
            )
        key = IdentityKey.generate()
        save_identity(self.dir.path, key, self._passphrase)
        return _Local(key, read_key_history(self.dir.path), None, created_key=True)

    # -- renewal -----------------------------------------------------------------------

    def renew(self) -> Registration:
        """A new X.509-SVID for a fresh P-256 key, over mTLS with the current SVID."""
        with self._lock:
            info = self._info()
            channel = self._agent_channel()
            svid_key, csr = flow.new_svid_key()
            request = svid_pb2.RenewX509SVIDRequest(csr=csr)
            timeout = channel.timeout
            response = channel.call(
                lambda ch: svid_pb2_grpc.SVIDServiceStub(ch).RenewX509SVID(
                    request, timeout=timeout
                )
            )
            if response.bundle.trust_domain != info.trust_domain:
                raise ResponseError(
                    f"the registry sent the bundle of {response.bundle.trust_domain}, "
                    f"expected {info.trust_domain}"
                )
            accepted = flow.accept(
                response.svid, response.bundle, svid_key, expected_spiffe_id=info.spiffe_id
            )
            result = flow.commit(self.dir, accepted, info, created=False)
            self._adopt(accepted)
            return result

    def fetch_jwt_svid(
        self, audience: str | Sequence[str], ttl: timedelta | int | None = None
    ) -> str:
        """A JWT-SVID (compact JWS, ES256) for ``audience``. A bearer token: never log it."""
        return self.fetch_jwt_svid_details(audience, ttl).token

    def fetch_jwt_svid_details(
        self, audience: str | Sequence[str], ttl: timedelta | int | None = None
    ) -> JWTSVID:
        audiences = [audience] if isinstance(audience, str) else list(audience)
        if not audiences or not all(audiences):
            raise MeshError("a JWT-SVID needs at least one non-empty audience")
        request = svid_pb2.FetchJWTSVIDRequest(
            audience=audiences, ttl_seconds=ttl_seconds(ttl, "JWT-SVID ttl")
        )
        channel = self._agent_channel()
        timeout = channel.timeout
        response = channel.call(
            lambda ch: svid_pb2_grpc.SVIDServiceStub(ch).FetchJWTSVID(request, timeout=timeout)
        )
        result = convert.jwt_svid(response)
        if not result.token:
            raise ResponseError("the registry returned an empty JWT-SVID")
        return result

    def trust_bundle(self) -> TrustBundle:
        """The registry's current trust bundle (no credential needed)."""
        return fetch_trust_bundle(self._public)

    # -- state -------------------------------------------------------------------------

    @property
    def info(self) -> AgentInfo:
        """``agent.json`` of the registered agent."""
        return self._info()

    @property
    def svid(self) -> X509SVID:
        """The current X.509-SVID (loaded from the directory on first use)."""
        with self._lock:
            if self._svid is None:
                chain_pem, key_pem = self.dir.read_svid()
                self._svid = X509SVID.parse(chain_pem, key_pem)
            return self._svid

    def _info(self) -> AgentInfo:
        info = self.dir.read_info()
        if info is None:
            raise MeshError(
                f"the agent in {self.dir.path} is not registered",
                hint=f"register it first: mesh register --token TOKEN --out {self.dir.path}",
            )
        return info

    def _agent_channel(self) -> RegistryChannel:
        with self._lock:
            if self._mtls is None:
                chain_pem, key_pem = self.dir.read_svid()
                self._svid = X509SVID.parse(chain_pem, key_pem)
                tls = TLSConfig(self.dir.read_bundle(), chain_pem, key_pem)
                self._mtls = RegistryChannel(
                    self.mtls_addresses, tls, timeout=self._timeout, retry=self._retry
                )
            return self._mtls

    def _adopt(self, accepted: flow.Accepted) -> None:
        """Use the new SVID and bundle for every call from now on (new channels)."""
        self._svid = accepted.svid
        chain_pem = accepted.svid.chain_pem()
        tls = TLSConfig(accepted.bundle_pem, chain_pem, accepted.key_pem)
        if self._mtls is None:
            self._mtls = RegistryChannel(
                self.mtls_addresses, tls, timeout=self._timeout, retry=self._retry
            )
        else:
            self._mtls.update_tls(tls)
        if self._public.tls.root_pem != accepted.bundle_pem:
            self._public.update_tls(TLSConfig(accepted.bundle_pem))

    # -- background renewal ------------------------------------------------------------

    def start_renewal(self) -> None:
        """Renew in a background thread at half life (with jitter) until :meth:`stop`.

        On UNAUTHENTICATED (the SVID expired or is no longer accepted) it
        re-registers with the identity key. When the registry says the agent
        may not renew (revoked, terminated) it stops and reports through
        ``on_error`` and :attr:`last_error`. Other failures are retried with
        backoff.
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self.svid  # noqa: B018 - fail now, in the caller, if there is no SVID to renew
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._renewal_loop, name="mesh-svid-renewal", daemon=True
            )
            self._thread.start()

    @property
    def renewing(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _renewal_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            svid = self.svid
            now = self._clock()
            if failures:
                delay = failure_delay(failures, now, svid.expires_at, self._rng)
            else:
                delay = renewal_delay(
                    svid.issued_at, svid.expires_at, now, jitter=self._jitter, rng=self._rng
                )
            if self._wait(delay) or self._stop.is_set():
                return
            try:
                result = self._renew_or_reregister()
            except (PermissionDenied, FailedPrecondition) as exc:
                self._report(exc)
                return
            except MeshError as exc:
                failures += 1
                self._report(exc)
                continue
            failures = 0
            self.last_error = None
            if self._on_renewed is not None:
                self._on_renewed(result)

    def _renew_or_reregister(self) -> Registration:
        try:
            return self.renew()
        except Unauthenticated:
            # The SVID expired while the registry was away, or was not accepted:
            # authenticate with the identity key instead, as after a restart.
            return self.register()

    def _report(self, exc: MeshError) -> None:
        self.last_error = exc
        if self._on_error is not None:
            self._on_error(exc)

    def stop(self) -> None:
        """Stop background renewal (waits for a renewal in progress). Idempotent."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._thread = None

    def close(self) -> None:
        """Stop renewal and close the channels. Idempotent."""
        self.stop()
        with self._lock:
            self._public.close()
            if self._mtls is not None:
                self._mtls.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
