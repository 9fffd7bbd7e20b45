"""Where the peer verifier gets senders: ``AgentService.ResolveDID`` and ``EventService.Watch``."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from typing import Protocol

import grpc

from mesh.client._internal import convert
from mesh.client.channel import (
    DEFAULT_REGISTRY,
    RegistryChannel,
    RetryPolicy,
    TLSConfig,
    mtls_addresses,
    parse_addresses,
)
from mesh.client.types import Resolution
from mesh.v1 import agents_pb2, agents_pb2_grpc


class DIDSource(Protocol):
    """Resolves a DID: its agent (status), keys (``compromised_at``) and signed key history.

    Raises :class:`mesh.client.NotFound` for a DID the registry does not know
    and another :class:`mesh.client.RegistryError` when it cannot answer.
    ``OperatorClient`` is one; :class:`RegistrySource` is the agent's.
    """

    def resolve_did(self, did: str) -> Resolution: ...


class RegistrySource:
    """ResolveDID calls and Watch channels over one :class:`RegistryChannel` (mTLS).

    ResolveDID is open to any authenticated caller: an agent's X.509-SVID or
    the operator credential. Watch streams get their own channel each time
    (a stream outlives calls; failover walks the addresses in turn).
    """

    def __init__(self, channel: RegistryChannel) -> None:
        self._channel = channel
        self._next = itertools.cycle(range(len(channel.addresses)))
        self._lock = threading.Lock()

    @classmethod
    def connect(
        cls,
        registry: str | Sequence[str] = DEFAULT_REGISTRY,
        *,
        tls: TLSConfig,
        mtls_registry: str | Sequence[str] | None = None,
        timeout: float = 5.0,
        retry: RetryPolicy | None = None,
    ) -> RegistrySource:
        """A source over mutual TLS (``tls`` holds an SVID or another client credential).

        ``registry`` is the registry's TLS address; calls go to its mTLS address
        (``mtls_registry``, by default each address's port + 1). Retries are
        few and short by default: a verifier would rather answer from its cache
        (or refuse) than hold a message for long.
        """
        if not tls.mutual:
            raise ValueError("ResolveDID needs a client certificate (tls.mutual)")
        addresses = parse_addresses(mtls_registry) if mtls_registry else mtls_addresses(registry)
        channel = RegistryChannel(
            addresses,
            tls,
            timeout=timeout,
            retry=retry or RetryPolicy(rounds=2, initial_backoff=0.1, max_backoff=0.5),
        )
        return cls(channel)

    @property
    def channel(self) -> RegistryChannel:
        return self._channel

    def resolve_did(self, did: str) -> Resolution:
        request = agents_pb2.ResolveDIDRequest(did=did)
        timeout = self._channel.timeout
        response = self._channel.call(
            lambda ch: agents_pb2_grpc.AgentServiceStub(ch).ResolveDID(request, timeout=timeout)
        )
        return convert.resolution(response)

    def watch_channel(self) -> grpc.Channel:
        with self._lock:
            address = self._channel.addresses[next(self._next)]
        tls = self._channel.tls
        return grpc.secure_channel(address, tls.credentials(), options=tls.options())

    def close(self) -> None:
        self._channel.close()
