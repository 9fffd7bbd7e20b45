"""The asyncio flavour of the agent client, over grpc.aio.

Same directory, same checks, same retry rules as :class:`mesh.client.AgentClient`;
background renewal is an asyncio task instead of a thread::

    async with AsyncAgentClient("127.0.0.1:8443", agent_dir, bundle_pem) as client:
        await client.register(join_token)
        client.start_renewal()
        token = await client.fetch_jwt_svid("billing-api")

Directory reads and writes (small files, key derivation for an encrypted
identity key) run in a worker thread, so the event loop never blocks on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import grpc.aio

from mesh.client._internal import convert, flow
from mesh.client._internal import rotation as key_rotation
from mesh.client._internal.core import AgentCore, Attempt, Clock, utc_now
from mesh.client.channel import (
    DEFAULT_TIMEOUT,
    AsyncRegistryChannel,
    RetryPolicy,
    TLSConfig,
)
from mesh.client.errors import (
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from mesh.client.operator import check_bundle
from mesh.client.renewal import DEFAULT_JITTER
from mesh.client.rotation_types import KeyRotation
from mesh.client.types import JWTSVID, Registration, TrustBundle
from mesh.errors import MeshError
from mesh.rotation import ROTATION_REQUIRED
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

# await wait(seconds) -> True when the client was stopped during the wait.
AsyncWait = Callable[[float], Awaitable[bool]]


class AsyncAgentClient(AgentCore):
    """Registers one agent and keeps its X.509-SVID current, on an asyncio event loop.

    Parameters are those of :class:`mesh.client.AgentClient`; ``wait`` is a
    coroutine function here.
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
        wait: AsyncWait | None = None,
        jitter: float = DEFAULT_JITTER,
        rng: random.Random | None = None,
        on_renewed: Callable[[Registration], None] | None = None,
        on_error: Callable[[MeshError], None] | None = None,
        on_key_rotated: Callable[[KeyRotation], None] | None = None,
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
        self._stop = asyncio.Event()
        self._wait: AsyncWait = wait or self._wait_for_stop
        self._lock = asyncio.Lock()
        self._public = AsyncRegistryChannel(
            self.addresses, TLSConfig(self._root_pem), timeout=timeout, retry=self._retry
        )
        self._mtls: AsyncRegistryChannel | None = None
        self._task: asyncio.Task[None] | None = None
        self._rotation_lock = asyncio.Lock()
        self._on_key_rotated = on_key_rotated
        self.auto_rotate = auto_rotate

    async def _wait_for_stop(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    # -- registration ------------------------------------------------------------------

    async def register(
        self, join_token: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> Registration:
        """See :meth:`mesh.client.AgentClient.register`."""
        async with self._lock:
            plan = await asyncio.to_thread(self._plan, join_token, metadata)
            timeout = self._public.timeout

            async def op(ch: grpc.aio.Channel) -> Attempt:
                stub = registration_pb2_grpc.RegistrationServiceStub(ch)
                challenge = await stub.GetChallenge(
                    registration_pb2.GetChallengeRequest(), timeout=timeout
                )
                attempt, request = self._register_request(plan, challenge)
                response = await stub.Register(request, timeout=timeout)
                return Attempt(attempt.trust_domain, attempt.svid_key, response)

            attempt = await self._public.call(op)
            result, accepted = await asyncio.to_thread(self._accept_registration, plan, attempt)
            self._adopt(accepted)
            return result

    # -- renewal -----------------------------------------------------------------------

    async def renew(self) -> Registration:
        """See :meth:`mesh.client.AgentClient.renew`."""
        async with self._lock:
            info = await asyncio.to_thread(self._info)
            channel = await self._agent_channel()
            svid_key, csr = flow.new_svid_key()
            request = svid_pb2.RenewX509SVIDRequest(csr=csr)
            timeout = channel.timeout

            async def op(ch: grpc.aio.Channel) -> Any:
                stub = svid_pb2_grpc.SVIDServiceStub(ch)
                return await stub.RenewX509SVID(request, timeout=timeout)

            response = await channel.call(op)
            result, accepted = await asyncio.to_thread(
                self._accept_renewal, info, svid_key, response
            )
            self._adopt(accepted)
            return result

    async def fetch_jwt_svid(
        self, audience: str | Sequence[str], ttl: timedelta | int | None = None
    ) -> str:
        """A JWT-SVID (compact JWS, ES256) for ``audience``. A bearer token: never log it."""
        return (await self.fetch_jwt_svid_details(audience, ttl)).token

    async def fetch_jwt_svid_details(
        self, audience: str | Sequence[str], ttl: timedelta | int | None = None
    ) -> JWTSVID:
        request = self._jwt_request(audience, ttl)
        channel = await self._agent_channel()
        timeout = channel.timeout

        async def op(ch: grpc.aio.Channel) -> Any:
            return await svid_pb2_grpc.SVIDServiceStub(ch).FetchJWTSVID(request, timeout=timeout)

        return self._jwt_result(await channel.call(op))

    async def trust_bundle(self) -> TrustBundle:
        timeout = self._public.timeout

        async def op(ch: grpc.aio.Channel) -> Any:
            stub = svid_pb2_grpc.SVIDServiceStub(ch)
            return await stub.GetTrustBundle(svid_pb2.GetTrustBundleRequest(), timeout=timeout)

        bundle = convert.trust_bundle(await self._public.call(op))
        check_bundle(bundle)
        return bundle

    @property
    def svid(self) -> X509SVID:
        """The current X.509-SVID (loaded from the directory on first use)."""
        return self._current_svid()

    # -- identity key rotation ---------------------------------------------------------

    async def rotate_key(self, *, lead: timedelta = key_rotation.DEFAULT_LEAD) -> KeyRotation:
        """See :meth:`mesh.client.AgentClient.rotate_key`."""
        async with self._rotation_lock:
            pending = await asyncio.to_thread(key_rotation.load_pending, self.dir, self._passphrase)
            if pending is not None and pending.at <= self._clock():
                held = await self._registry_kid()
                if held == pending.key.kid:
                    await asyncio.to_thread(
                        key_rotation.commit, self.dir, pending, self._passphrase
                    )
                    return self._key_rotated(pending, rotated=False)
                if held is not None:
                    await asyncio.to_thread(key_rotation.abandon, self.dir)
                    pending = None
            if pending is None:
                pending = await asyncio.to_thread(
                    key_rotation.prepare, self.dir, self._passphrase, self._clock(), lead
                )
            try:
                response = await self._submit_rotation(pending.history.to_json())
            except (InvalidRequest, FailedPrecondition, PermissionDenied, NotFound):
                await asyncio.to_thread(key_rotation.abandon, self.dir)
                raise
            key_rotation.check_accepted(pending, response.current_key.kid)
            # As the sync client: the directory's key changes at the rotation time.
            await asyncio.sleep(key_rotation.settle_seconds(pending, self._clock()))
            await asyncio.to_thread(key_rotation.commit, self.dir, pending, self._passphrase)
            return self._key_rotated(pending, rotated=bool(response.rotated))

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

    async def _submit_rotation(self, history_json: str) -> Any:
        request = rotation_pb2.RotateKeyRequest(key_history=history_json)
        timeout = self._timeout

        async def op(ch: grpc.aio.Channel) -> Any:
            return await rotation_pb2_grpc.KeyServiceStub(ch).RotateKey(request, timeout=timeout)

        if self._svid_usable():
            try:
                return await (await self._agent_channel()).call(op)
            except Unauthenticated:
                pass  # the SVID is no longer accepted: the history's signatures suffice
        return await self._public.call(op)

    def _svid_usable(self) -> bool:
        if not self.dir.has_svid():
            return False
        try:
            return self._current_svid().expires_at > self._clock()
        except MeshError:
            return False

    async def _registry_kid(self) -> str | None:
        if not self._svid_usable():
            return None
        try:
            info = await asyncio.to_thread(self._info)
            request = agents_pb2.ResolveDIDRequest(did=info.did)
            timeout = self._timeout

            async def op(ch: grpc.aio.Channel) -> Any:
                stub = agents_pb2_grpc.AgentServiceStub(ch)
                return await stub.ResolveDID(request, timeout=timeout)

            response = await (await self._agent_channel()).call(op)
        except MeshError:
            return None
        return str(response.agent.current_key.kid) or None

    async def _agent_channel(self) -> AsyncRegistryChannel:
        if self._mtls is None:
            tls = await asyncio.to_thread(self._disk_tls)
            if self._mtls is None:
                self._mtls = AsyncRegistryChannel(
                    self.mtls_addresses, tls, timeout=self._timeout, retry=self._retry
                )
        return self._mtls

    def _adopt(self, accepted: flow.Accepted) -> None:
        tls = self._tls_of(accepted)
        if self._mtls is None:
            self._mtls = AsyncRegistryChannel(
                self.mtls_addresses, tls, timeout=self._timeout, retry=self._retry
            )
        else:
            self._mtls.update_tls(tls)
        if self._public.tls.root_pem != accepted.bundle_pem:
            self._public.update_tls(TLSConfig(accepted.bundle_pem))

    # -- background renewal ------------------------------------------------------------

    def start_renewal(self) -> asyncio.Task[None]:
        """Renew in an asyncio task at half life (with jitter) until :meth:`stop`.

        Same rules as :meth:`mesh.client.AgentClient.start_renewal`.
        """
        if self._task is not None and not self._task.done():
            return self._task
        self._current_svid()  # fail now, in the caller, if there is no SVID to renew
        self._stop.clear()
        self._task = asyncio.get_running_loop().create_task(
            self._renewal_loop(), name="mesh-svid-renewal"
        )
        return self._task

    @property
    def renewing(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _renewal_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                delay = self._next_delay(failures)
            except MeshError as exc:  # no readable SVID left to schedule from
                self._report(exc)
                return
            if await self._wait(delay) or self._stop.is_set():
                return
            try:
                result = await self._renew_or_reregister()
            except (PermissionDenied, FailedPrecondition) as exc:
                self._report(exc)
                return
            except MeshError as exc:
                failures += 1
                self._report(exc)
                continue
            failures = 0
            self._renewed(result)

    async def _renew_or_reregister(self) -> Registration:
        try:
            return await self._rotating(self.renew)
        except Unauthenticated:
            return await self._rotating(self.register)

    async def _rotating(self, op: Callable[[], Awaitable[Registration]]) -> Registration:
        """``op``; when the registry wants the key rotated first, rotate and try again."""
        try:
            return await op()
        except FailedPrecondition as exc:
            if not self.auto_rotate or f"): {ROTATION_REQUIRED}:" not in exc.message:
                raise
            await self.rotate_key()
            return await op()

    async def stop(self) -> None:
        """Stop background renewal (lets a renewal in progress finish). Idempotent."""
        self._stop.set()
        task = self._task
        if task is not None and task is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None

    async def close(self) -> None:
        await self.stop()
        await self._public.close()
        if self._mtls is not None:
            await self._mtls.close()

    async def __aenter__(self) -> AsyncAgentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
