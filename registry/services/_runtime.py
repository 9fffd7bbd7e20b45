"""What every service shares: the CA, the store, a thread pool, and message builders."""

from __future__ import annotations

import asyncio
import functools
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from google.protobuf.timestamp_pb2 import Timestamp  # type: ignore[import-untyped]

from mesh.spiffeid import TrustDomain
from mesh.v1 import types_pb2
from registry.ca import SignedLeaf
from registry.config import Config
from registry.metrics import Metrics
from registry.services._challenge import ChallengeMinter
from registry.store._internal.group import when_delivered
from registry.store.records import AgentKeyRecord, AgentRecord

T = TypeVar("T")

STATUS_TO_PB = {
    "active": types_pb2.AGENT_STATUS_ACTIVE,
    "revoked": types_pb2.AGENT_STATUS_REVOKED,
    "terminated": types_pb2.AGENT_STATUS_TERMINATED,
}
PB_TO_STATUS = {v: k for k, v in STATUS_TO_PB.items()}

_BundleCache = tuple[
    int, float, types_pb2.TrustBundle, frozenset[bytes], tuple[x509.Certificate, ...]
]

# The bundle document is rebuilt at most this often (and whenever the CA's sequence moves).
_BUNDLE_TTL_SECONDS = 30.0


class Runtime:
    """Shared by every servicer of one server. Store and CPU-heavy calls run in ``executor``."""

    def __init__(
        self,
        *,
        config: Config,
        ca: Any,
        store: Any,
        metrics: Metrics,
        executor: ThreadPoolExecutor,
        challenge_key: bytes | None = None,
    ) -> None:
        self.config = config
        self.trust_domain = TrustDomain.parse(config.trust_domain)
        self.ca = ca
        self.store = store
        self.metrics = metrics
        self.executor = executor
        # Replicas share the key (DIR/challenge.key); without one, this process makes its own.
        self.challenges = ChallengeMinter(
            challenge_key or secrets.token_bytes(32),
            self.trust_domain.name,
            timedelta(seconds=config.challenge_ttl_seconds),
        )
        self._bundle_lock = threading.Lock()
        # (CA sequence, built at, message, anchor DERs, anchor certificate objects)
        self._bundle: _BundleCache | None = None
        self._landings: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Landing] = (
            weakref.WeakKeyDictionary()
        )

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args, **kwargs) if kwargs else (
            functools.partial(fn, *args) if args else fn
        )
        return await loop.run_in_executor(self.executor, call)

    async def write(self, work: Callable[[Any], T]) -> T:
        """``work(tx)`` in the store's next group commit (see ``Store.submit``): its
        result once committed, or its own error. Nothing waits in a worker thread."""
        return await self._landing().wait(self.store.submit(work))

    async def write_batched(self, batch: Any, item: Any) -> Any:
        """``item`` of ``batch`` through the store's group commit (``Store.submit_batched``:
        prepared by the store's writer thread, written set-based with the items of
        the same batch that arrive with it); its result once committed."""
        return await self._landing().wait(self.store.submit_batched(batch, item))

    def _landing(self) -> _Landing:
        loop = asyncio.get_running_loop()
        landing = self._landings.get(loop)
        if landing is None:
            landing = self._landings.setdefault(loop, _Landing(loop))
        return landing

    # -- trust bundle ----------------------------------------------------------

    def _current_bundle(self) -> _BundleCache:
        now = time.monotonic()
        cached = self._bundle
        sequence = self.ca.sequence
        if cached is not None and cached[0] == sequence and now - cached[1] < _BUNDLE_TTL_SECONDS:
            return cached
        with self._bundle_lock:
            bundle = self.ca.bundle()
            message = types_pb2.TrustBundle(
                trust_domain=self.trust_domain.name,
                spiffe_bundle=bundle.marshal(),
                x509_authorities_pem=bundle.x509_pem(),
                sequence=bundle.sequence,
            )
            anchors = frozenset(
                c.public_bytes(serialization.Encoding.DER) for c in bundle.x509_authorities
            )
            # The CA hands out the same certificate objects it signs with: know them
            # by identity too, so a chain's CA certificate needs no re-encoding.
            self._bundle = (sequence, now, message, anchors, tuple(bundle.x509_authorities))
            return self._bundle

    def bundle_pb(self) -> types_pb2.TrustBundle:
        return self._current_bundle()[2]

    def svid_pb(self, chain: list[x509.Certificate], spiffe_id: str) -> types_pb2.X509SVID:
        """The SVID message: the leaf, then intermediates that are not bundle authorities."""
        leaf = chain[0]
        message = types_pb2.X509SVID()
        self._fill_svid(
            message, leaf.public_bytes(serialization.Encoding.DER), leaf.not_valid_after_utc,
            chain[1:], spiffe_id,
        )
        return message

    def fill_signed_svid(
        self, message: types_pb2.X509SVID, leaf: SignedLeaf, spiffe_id: str
    ) -> None:
        """:meth:`svid_pb` for a leaf as the CA signed it (its DER at hand), written
        into ``message``: a response's own field, filled in place rather than built
        apart and copied in."""
        self._fill_svid(message, leaf.der, leaf.not_valid_after_utc, (leaf.issuer,), spiffe_id)

    def _fill_svid(
        self,
        message: types_pb2.X509SVID,
        leaf_der: bytes,
        expires_at: datetime,
        intermediates: Sequence[x509.Certificate],
        spiffe_id: str,
    ) -> None:
        _, _, _, anchors, known = self._current_bundle()
        chain = message.cert_chain
        chain.append(leaf_der)
        for cert in intermediates:
            if any(cert is anchor for anchor in known):
                continue
            der = cert.public_bytes(serialization.Encoding.DER)
            if der not in anchors:
                chain.append(der)
        message.spiffe_id = spiffe_id
        set_timestamp(message.expires_at, expires_at)


class _Landing:
    """Brings results of other threads' futures onto one event loop, in bulk.

    ``asyncio.wrap_future`` wakes the loop once per future. A group commit
    finishes dozens of futures at once, so here the first one completed
    schedules a single callback and the others join its list: one wake-up
    per group instead of one per call.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._ready: list[tuple[asyncio.Future[Any], Future[Any]]] = []

    async def wait(self, future: Future[T]) -> T:
        waiter: asyncio.Future[T] = self._loop.create_future()
        future.add_done_callback(functools.partial(self._arrived, waiter))
        return await waiter

    def _arrived(self, waiter: asyncio.Future[Any], future: Future[Any]) -> None:
        # On the thread that completed ``future``: the store's writer thread wakes the
        # loop once it has resolved its whole group (see ``when_delivered``).
        with self._lock:
            self._ready.append((waiter, future))
            first = len(self._ready) == 1
        if first:
            when_delivered(self._wake)

    def _wake(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _deliver(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
        for waiter, future in ready:
            if waiter.done():  # the caller was cancelled
                continue
            try:  # one look at the done future (each takes its lock)
                value = future.result()
            except BaseException as error:  # the call's own error, handed on
                waiter.set_exception(error)
            else:
                waiter.set_result(value)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(at: datetime) -> Timestamp:
    """``at`` as a protobuf Timestamp (a naive ``at`` is UTC, as ``FromDatetime`` has it)."""
    message = Timestamp()
    set_timestamp(message, at)
    return message


def set_timestamp(message: Timestamp, at: datetime) -> None:
    """Write ``at`` into a Timestamp field in place (see :func:`timestamp`)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    delta = at - _EPOCH
    message.seconds = delta.days * 86400 + delta.seconds
    message.nanos = delta.microseconds * 1000


def key_pb(record: AgentKeyRecord) -> types_pb2.KeyInfo:
    info = types_pb2.KeyInfo(
        kid=record.kid,
        public_key=record.public_key,
        index=record.index,
        valid_from=timestamp(record.valid_from),
    )
    if record.rotated_at is not None:
        info.rotated_at.CopyFrom(timestamp(record.rotated_at))
    if record.compromised_at is not None:
        info.compromised_at.CopyFrom(timestamp(record.compromised_at))
    return info


def agent_pb(record: AgentRecord, current_key: AgentKeyRecord | None) -> types_pb2.Agent:
    agent = types_pb2.Agent(
        did=record.did,
        name=record.name,
        spiffe_id=record.spiffe_id,
        status=STATUS_TO_PB.get(record.status, types_pb2.AGENT_STATUS_UNSPECIFIED),
        granted_ring=record.granted_ring,
        metadata={str(k): str(v) for k, v in record.metadata.items()},
        created_at=timestamp(record.created_at),
        updated_at=timestamp(record.updated_at),
        revoke_reason=record.revoke_reason or "",
    )
    if current_key is not None:
        agent.current_key.CopyFrom(key_pb(current_key))
    if record.revoked_at is not None:
        agent.revoked_at.CopyFrom(timestamp(record.revoked_at))
    return agent


__all__ = [
    "PB_TO_STATUS",
    "STATUS_TO_PB",
    "Runtime",
    "agent_pb",
    "key_pb",
    "set_timestamp",
    "timestamp",
]
