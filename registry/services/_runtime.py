"""What every service shares: the CA, the store, a thread pool, and message builders."""

from __future__ import annotations

import asyncio
import functools
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from google.protobuf.timestamp_pb2 import Timestamp  # type: ignore[import-untyped]

from mesh.spiffeid import TrustDomain
from mesh.v1 import types_pb2
from registry.config import Config
from registry.metrics import Metrics
from registry.services._challenge import ChallengeMinter
from registry.store.records import AgentKeyRecord, AgentRecord

T = TypeVar("T")

STATUS_TO_PB = {
    "active": types_pb2.AGENT_STATUS_ACTIVE,
    "revoked": types_pb2.AGENT_STATUS_REVOKED,
    "terminated": types_pb2.AGENT_STATUS_TERMINATED,
}
PB_TO_STATUS = {v: k for k, v in STATUS_TO_PB.items()}

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
        self._bundle: tuple[int, float, types_pb2.TrustBundle, frozenset[bytes]] | None = None

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args, **kwargs) if kwargs else (
            functools.partial(fn, *args) if args else fn
        )
        return await loop.run_in_executor(self.executor, call)

    # -- trust bundle ----------------------------------------------------------

    def _current_bundle(self) -> tuple[types_pb2.TrustBundle, frozenset[bytes]]:
        now = time.monotonic()
        cached = self._bundle
        sequence = self.ca.sequence
        if cached is not None and cached[0] == sequence and now - cached[1] < _BUNDLE_TTL_SECONDS:
            return cached[2], cached[3]
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
            self._bundle = (sequence, now, message, anchors)
            return message, anchors

    def bundle_pb(self) -> types_pb2.TrustBundle:
        return self._current_bundle()[0]

    def svid_pb(self, chain: list[x509.Certificate], spiffe_id: str) -> types_pb2.X509SVID:
        """The SVID message: the leaf, then intermediates that are not bundle authorities."""
        anchors = self._current_bundle()[1]
        ders = [c.public_bytes(serialization.Encoding.DER) for c in chain]
        kept = [ders[0], *(d for d in ders[1:] if d not in anchors)]
        return types_pb2.X509SVID(
            cert_chain=kept,
            spiffe_id=spiffe_id,
            expires_at=timestamp(chain[0].not_valid_after_utc),
        )


def timestamp(at: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(at)
    return ts


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


__all__ = ["PB_TO_STATUS", "STATUS_TO_PB", "Runtime", "agent_pb", "key_pb", "timestamp"]
