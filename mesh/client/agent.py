"""The agent's client: register at boot, keep key and SVID on disk, renew in the background.

Usage::

    client = AgentClient("127.0.0.1:8443", Path("/var/lib/agent"), Path("bundle.pem"))
    client.register(join_token)         # first boot; later boots: client.register()
    client.start_renewal()              # renews at half life, in a thread
    token = client.fetch_jwt_svid("billing-api")
    ...
    client.close()

Everything the agent holds lives in its directory (see :mod:`mesh.agentdir`);
a new client over the same directory (a restart) picks it up. Registration and
renewal are retried as a whole on UNAVAILABLE (fresh challenge, fresh CSR) and
are idempotent: the same key always gets the same DID.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta

import grpc

from mesh.client._internal import flow
from mesh.client._internal import rotation as key_rotation
from mesh.client._internal.core import AgentCore, Attempt, Clock, utc_now
from mesh.client.channel import DEFAULT_TIMEOUT, RegistryChannel, RetryPolicy, TLSConfig
from mesh.client.errors import (
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from mesh.client.operator import fetch_trust_bundle
from mesh.client.renewal import DEFAULT_JITTER
from mesh.client.rotation_types import KeyRotation
from mesh.client.types import JWTSVID, Registration, TrustBundle
from mesh.errors import MeshError
from mesh.rotation import ROTATION_REQUIRED, RotatingSigner
from mesh.svid import X509SVID
from mesh.v1 import (
    agents_pb2,
    agents_pb2_grpc,
    registration_pb2,
    registration_pb2_grpc,
    rotation_pb2,
    rotation_pb2_grpc,
    svid_pb2,
    svid_pb2_grpc,
)

# wait(seconds) -> True when the client was stopped during the wait.
Wait = Callable[[float], bool]

__all__ = ["AgentClient", "Clock", "Wait", "utc_now"]


class AgentClient(AgentCore):
    """Registers one agent and keeps its X.509-SVID current. Thread-safe.

    ``registry``: the registry's TLS address ``HOST:PORT``, several of them
    (failover), or None to use the address recorded in ``agent.json`` by an
    earlier registration. Calls that need the SVID go to its mutual-TLS
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
        on_key_rotated: Callable[[KeyRotation], None] | None = None,
        on_bundle_changed: Callable[[bytes], None] | None = None,
        auto_rotate: bool = True,
    ) -> None:
        super().__init__(
            registry,
            agent_dir,
            bundle_pem,
            mtls_registry=mtls_registry,
            passphrase=passphrase,
            trust_domain=trust_domain,
            timeout=timeout,
            retry=retry,
            clock=clock,
            jitter=jitter,
            rng=rng,
            on_renewed=on_renewed,
            on_error=on_error,
        )
        self._stop = threading.Event()
        self._wait: Wait = wait or self._stop.wait
        self._lock = threading.RLock()
        self._public = RegistryChannel(
            self.addresses, TLSConfig(self._root_pem), timeout=timeout, retry=self._retry
        )
        self._mtls: RegistryChannel | None = None
        self._thread: threading.Thread | None = None
        # Key rotation: one at a time, never holding up renewal or JWT-SVID calls.
        self._rotation_lock = threading.Lock()
        self._on_key_rotated = on_key_rotated
        self._signer: RotatingSigner | None = None
        self._signer_lock = threading.Lock()
        self._on_bundle_changed = on_bundle_changed
        # Rotate by itself when the registry refuses an SVID until the key is rotated.
        self.auto_rotate = auto_rotate

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
            plan = self._plan(join_token, metadata)
            timeout = self._public.timeout

            def op(ch: grpc.Channel) -> Attempt:
                stub = registration_pb2_grpc.RegistrationServiceStub(ch)
                challenge = stub.GetChallenge(
                    registration_pb2.GetChallengeRequest(), timeout=timeout
                )
                attempt, request = self._register_request(plan, challenge)
                response = stub.Register(request, timeout=timeout)
                return Attempt(attempt.trust_domain, attempt.svid_key, response)

            result, accepted = self._accept_registration(plan, self._public.call(op))
            self._adopt(accepted)
            return result

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
            result, accepted = self._accept_renewal(info, svid_key, response)
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
        request = self._jwt_request(audience, ttl)
        channel = self._agent_channel()
        timeout = channel.timeout
        response = channel.call(
            lambda ch: svid_pb2_grpc.SVIDServiceStub(ch).FetchJWTSVID(request, timeout=timeout)
        )
        return self._jwt_result(response)

    def trust_bundle(self) -> TrustBundle:
        """The registry's current trust bundle (no credential needed)."""
        return fetch_trust_bundle(self._public)

    def refresh_bundle(self) -> bool:
        """Fetch the trust bundle; if its authorities changed, use them from now on.

        Writes ``bundle.0.pem`` and swaps the TLS roots of both channels (new
        connections trust the new set; nothing restarts). True when it changed.
        """
        bundle = self.trust_bundle()
        pem = bundle.x509_authorities_pem
        with self._lock:
            if self.dir.bundle.exists() and self.dir.read_bundle() == pem:
                return False
            self.dir.write_bundle(pem)
            if self._mtls is not None and self.dir.has_svid():
                chain_pem, key_pem = self.dir.read_svid()
                self._mtls.update_tls(TLSConfig(pem, chain_pem, key_pem))
            self._public.update_tls(TLSConfig(pem))
        if self._on_bundle_changed is not None:
            self._on_bundle_changed(pem)
        return True

    # -- identity key rotation ---------------------------------------------------------

    def rotate_key(self, *, lead: timedelta = key_rotation.DEFAULT_LEAD) -> KeyRotation:
        """Rotate the identity key: a new key, the history signed by both, the registry told.

        The DID stays. The rotation is dated at a whole second ``lead`` ahead
        (see :class:`mesh.rotation.RotatingSigner`); the directory switches to
        the new key only once the registry has accepted it, and survives a crash
        at any point (see :mod:`mesh.client._internal.rotation`). A refusal
        raises (and leaves the current key in place); an unreachable registry
        raises and the next call resumes the same rotation.
        """
        with self._rotation_lock:
            pending = key_rotation.load_pending(self.dir, self._passphrase)
            if pending is not None and pending.at <= self._clock():
                held = self._registry_kid()
                if held == pending.key.kid:
                    self._adopt_key(pending)
                    key_rotation.commit(self.dir, pending, self._passphrase)
                    return self._key_rotated(pending, rotated=False)
                if held is not None:
                    # The registry never got it and its time has passed: make a fresh one.
                    key_rotation.abandon(self.dir)
                    pending = None
            if pending is None:
                pending = key_rotation.prepare(self.dir, self._passphrase, self._clock(), lead)
            try:
                response = self._submit_rotation(pending.history.to_json())
            except (InvalidRequest, FailedPrecondition, PermissionDenied, NotFound):
                key_rotation.abandon(self.dir)
                raise
            key_rotation.check_accepted(pending, response.current_key.kid)
            self._adopt_key(pending)
            # The old key signs until the rotation time: only then does the directory's key
            # change, so whoever reads identity.key always gets the key that signs now.
            time.sleep(key_rotation.settle_seconds(pending, self._clock()))
            key_rotation.commit(self.dir, pending, self._passphrase)
            return self._key_rotated(pending, rotated=bool(response.rotated))

    def signer(self) -> RotatingSigner:
        """A signer for this agent's messages that follows its key rotations.

        It signs with the old key until a rotation's time and with the new key
        from then on (see :class:`mesh.rotation.RotatingSigner`).
        """
        with self._signer_lock:
            if self._signer is None:
                key, history = key_rotation.current(self.dir, self._passphrase)
                self._signer = RotatingSigner(key, history, clock=self._clock)
            return self._signer

    def _adopt_key(self, pending: key_rotation.PendingRotation) -> None:
        with self._signer_lock:
            if self._signer is not None:
                self._signer.adopt(pending.key, pending.history)

    def _key_rotated(self, pending: key_rotation.PendingRotation, *, rotated: bool) -> KeyRotation:
        result = KeyRotation(
            did=str(pending.history.did),
            previous_kid=pending.previous_kid,
            kid=pending.key.kid,
            at=pending.at,
            rotated=rotated,
        )
        if self._on_key_rotated is not None:
            self._on_key_rotated(result)
        return result

    def _submit_rotation(self, history_json: str) -> rotation_pb2.RotateKeyResponse:
        request = rotation_pb2.RotateKeyRequest(key_history=history_json)

        def op(ch: grpc.Channel) -> rotation_pb2.RotateKeyResponse:
            stub = rotation_pb2_grpc.KeyServiceStub(ch)
            response: rotation_pb2.RotateKeyResponse = stub.RotateKey(
                request, timeout=self._timeout
            )
            return response

        if self._svid_usable():
            try:
                return self._agent_channel().call(op)
            except Unauthenticated:
                pass  # the SVID is no longer accepted: the history's signatures suffice
        return self._public.call(op)

    def _svid_usable(self) -> bool:
        if not self.dir.has_svid():
            return False
        try:
            with self._lock:
                svid = self._current_svid()
        except MeshError:
            return False
        return svid.expires_at > self._clock()

    def _registry_kid(self) -> str | None:
        """The current kid the registry holds for this agent, or None if it cannot be asked."""
        if not self._svid_usable():
            return None
        try:
            info = self._info()
            request = agents_pb2.ResolveDIDRequest(did=info.did)
            response = self._agent_channel().call(
                lambda ch: agents_pb2_grpc.AgentServiceStub(ch).ResolveDID(
                    request, timeout=self._timeout
                )
            )
        except MeshError:
            return None
        return str(response.agent.current_key.kid) or None

    @property
    def svid(self) -> X509SVID:
        """The current X.509-SVID (loaded from the directory on first use)."""
        with self._lock:
            return self._current_svid()

    def _agent_channel(self) -> RegistryChannel:
        channel = self._mtls
        if channel is not None:  # no lock: a renewal in progress must not hold up other calls
            return channel
        with self._lock:
            if self._mtls is None:
                self._mtls = RegistryChannel(
                    self.mtls_addresses, self._disk_tls(), timeout=self._timeout, retry=self._retry
                )
            return self._mtls

    def _adopt(self, accepted: flow.Accepted) -> None:
        """Use the new SVID and bundle for every call from now on (new channels)."""
        tls = self._tls_of(accepted)
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
            self._current_svid()  # fail now, in the caller, if there is no SVID to renew
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
            try:
                with self._lock:
                    delay = self._next_delay(failures)
            except MeshError as exc:  # no readable SVID left to schedule from
                self._report(exc)
                return
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
            self._renewed(result)

    def _renew_or_reregister(self) -> Registration:
        try:
            return self._rotating(self.renew)
        except Unauthenticated:
            # The SVID expired while the registry was away, or was not accepted:
            # authenticate with the identity key instead, as after a restart.
            return self._rotating(self.register)

    def _rotating(self, op: Callable[[], Registration]) -> Registration:
        """``op``; when the registry wants the key rotated first, rotate and try again."""
        try:
            return op()
        except FailedPrecondition as exc:
            if not self.auto_rotate or f"): {ROTATION_REQUIRED}:" not in exc.message:
                raise
            self.rotate_key()
            return op()

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
