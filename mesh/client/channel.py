"""Channels to the registry: TLS trusting a bundle, mTLS with an SVID or the operator credential.

grpcio fixes a channel's credentials when the channel is made, so a new SVID
or a new bundle means a new channel. :class:`RegistryChannel` swaps channels
atomically: calls already running finish on the old channel, which is closed
when the last of them returns; new calls use the new one.

Every call has a deadline. Only UNAVAILABLE is retried (the registry could not
be reached, or went away before answering): each round tries every address
once, failing over to the next on UNAVAILABLE, and rounds are separated by
exponential backoff with jitter. Any other status is an answer and is raised
at once. The unit that is retried is a whole operation (e.g. challenge +
register), because a one-time challenge must not be replayed.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import grpc
import grpc.aio

from mesh.client.errors import CredentialError, RegistryError, from_rpc_error, unavailable
from mesh.errors import MeshError

T = TypeVar("T")
C = TypeVar("C")

DEFAULT_REGISTRY = "127.0.0.1:8443"
DEFAULT_TIMEOUT = 10.0


def parse_addresses(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``host:port`` addresses from a string (comma separated) or a sequence of them."""
    items = [spec] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in items:
        for part in item.split(","):
            address = part.strip()
            if not address:
                continue
            _check_address(address)
            if address not in out:
                out.append(address)
    if not out:
        raise MeshError(
            "no registry address given", hint="pass --registry HOST:PORT (e.g. 127.0.0.1:8443)"
        )
    return tuple(out)


def mtls_addresses(public: str | Sequence[str]) -> tuple[str, ...]:
    """The registry's mutual-TLS addresses by convention: each public address's port + 1.

    The registry serves unauthenticated calls (GetChallenge, Register,
    GetTrustBundle) on its TLS port and everything that needs a client
    certificate (agents' SVIDs, the operator credential) on a second port,
    by default the next one. Pass the mTLS addresses explicitly when the
    registry was started with another ``mtls_listen``.
    """
    out: list[str] = []
    for address in parse_addresses(public):
        host, _, port = address.rpartition(":")
        if int(port) == 65535:
            raise MeshError(
                f"cannot derive the mTLS address of {address} (port + 1 is out of range)",
                hint="pass the registry's mTLS address explicitly (--registry-mtls HOST:PORT)",
            )
        out.append(f"{host}:{int(port) + 1}")
    return tuple(out)


def _check_address(address: str) -> None:
    host, sep, port = address.rpartition(":")
    ok = bool(sep) and bool(host) and port.isdigit() and 0 < int(port) < 65536
    if host.startswith("["):
        ok = ok and host.endswith("]") and len(host) > 2
    elif ":" in host:
        ok = False  # a bare IPv6 address must be written [addr]:port
    if not ok:
        raise MeshError(
            f"invalid registry address {address!r}",
            hint="write it as HOST:PORT, e.g. 127.0.0.1:8443 or [::1]:8443",
        )


@dataclass(frozen=True)
class TLSConfig:
    """What a channel trusts and, for mTLS, presents.

    ``root_pem``: the CA certificates (trust bundle PEM) the registry's serving
    certificate must chain to. ``cert_chain_pem`` + ``private_key_pem``: the
    client certificate (an X.509-SVID, leaf first, or the operator credential).
    """

    root_pem: bytes
    cert_chain_pem: bytes | None = None
    private_key_pem: bytes | None = field(default=None, repr=False)
    # Host name to check the serving certificate against, when it differs from the address.
    server_name: str | None = None

    def __post_init__(self) -> None:
        if b"-----BEGIN CERTIFICATE-----" not in self.root_pem:
            raise CredentialError(
                "the trust bundle holds no PEM certificate",
                hint="pass the registry's bundle.pem (written by `mesh serve` into its data dir)",
            )
        if (self.cert_chain_pem is None) != (self.private_key_pem is None):
            raise CredentialError("a client certificate needs its private key, and vice versa")

    @classmethod
    def from_files(
        cls, bundle: Path, cert: Path | None = None, key: Path | None = None
    ) -> TLSConfig:
        return cls(
            root_pem=read_credential(bundle, "trust bundle"),
            cert_chain_pem=read_credential(cert, "certificate") if cert else None,
            private_key_pem=read_credential(key, "private key") if key else None,
        )

    @property
    def mutual(self) -> bool:
        return self.cert_chain_pem is not None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_pem,
            private_key=self.private_key_pem,
            certificate_chain=self.cert_chain_pem,
        )

    def options(self) -> list[tuple[str, Any]]:
        opts: list[tuple[str, Any]] = []
        if self.server_name:
            opts.append(("grpc.ssl_target_name_override", self.server_name))
        return opts


def read_credential(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CredentialError(
            f"{what} file {path} does not exist",
            hint="check the path (--bundle, --data-dir or --agent-dir)",
        ) from None
    except OSError as exc:
        raise CredentialError(f"cannot read {what} file {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class RetryPolicy:
    """Retries on UNAVAILABLE: ``rounds`` passes over all addresses, backoff between rounds."""

    rounds: int = 5
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    multiplier: float = 2.0
    # The fraction of each delay that is random: 0.5 -> delay in [d/2, d].
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError("rounds must be at least 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter is a fraction in [0, 1]")

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Delay before round ``retry + 1`` (``retry`` counts from 0)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier**retry)
        return base * (1.0 - self.jitter * rng.random())


NO_RETRY = RetryPolicy(rounds=1)


class _Slot(Generic[C]):
    """One channel and the number of calls running on it."""

    __slots__ = ("address", "channel", "inflight", "retired")

    def __init__(self, address: str, channel: C) -> None:
        self.address = address
        self.channel = channel
        self.inflight = 0
        self.retired = False


class _ChannelSet(ABC, Generic[C]):
    """The current channel, failover between addresses, and retiring replaced channels."""

    def __init__(
        self,
        addresses: str | Sequence[str],
        tls: TLSConfig,
        *,
        timeout: float,
        retry: RetryPolicy,
        rng: random.Random | None,
    ) -> None:
        self.addresses = parse_addresses(addresses)
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout
        self.retry = retry
        self._tls = tls
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._index = 0
        self._current: _Slot[C] | None = None
        self._closed = False

    @property
    def tls(self) -> TLSConfig:
        return self._tls

    @abstractmethod
    def _make(self, address: str, tls: TLSConfig) -> C:
        """A new channel to ``address`` with ``tls`` (sync or asyncio flavour)."""

    @abstractmethod
    def _dispose(self, channel: C) -> None:
        """Close ``channel`` once nothing uses it."""

    def _acquire(self) -> _Slot[C]:
        with self._lock:
            if self._closed:
                raise MeshError("this registry client is closed", hint="make a new one")
            if self._current is None:
                address = self.addresses[self._index]
                self._current = _Slot(address, self._make(address, self._tls))
            self._current.inflight += 1
            return self._current

    def _release(self, slot: _Slot[C]) -> None:
        with self._lock:
            slot.inflight -= 1
            dispose = slot.retired and slot.inflight == 0
        if dispose:
            self._dispose(slot.channel)

    def _retire_current(self) -> _Slot[C] | None:
        """Detach the current slot (lock held); returns it if it can be closed now."""
        old = self._current
        self._current = None
        if old is None:
            return None
        old.retired = True
        return old if old.inflight == 0 else None

    def _fail_over(self, slot: _Slot[C]) -> None:
        """``slot``'s address was unavailable: move on to the next address."""
        with self._lock:
            if self._current is not slot or len(self.addresses) == 1:
                return
            self._index = (self._index + 1) % len(self.addresses)
            ready = self._retire_current()
        if ready is not None:
            self._dispose(ready.channel)

    def update_tls(self, tls: TLSConfig) -> None:
        """Use ``tls`` for every call from now on (a renewed SVID, a new bundle)."""
        with self._lock:
            self._tls = tls
            ready = self._retire_current()
        if ready is not None:
            self._dispose(ready.channel)

    def _shutdown(self) -> _Slot[C] | None:
        with self._lock:
            self._closed = True
            return self._retire_current()

    @property
    def address(self) -> str:
        """The address calls currently go to."""
        return self.addresses[self._index]


class RegistryChannel(_ChannelSet[grpc.Channel]):
    """A synchronous, self-healing channel to one of several registry addresses."""

    def __init__(
        self,
        addresses: str | Sequence[str],
        tls: TLSConfig,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(addresses, tls, timeout=timeout, retry=retry, rng=rng)
        self._sleep = sleep

    def _make(self, address: str, tls: TLSConfig) -> grpc.Channel:
        return grpc.secure_channel(address, tls.credentials(), options=tls.options())

    def _dispose(self, channel: grpc.Channel) -> None:
        channel.close()

    def call(self, op: Callable[[grpc.Channel], T]) -> T:
        """Run ``op(channel)``, retrying the whole of it on UNAVAILABLE only.

        ``op`` makes its calls with ``timeout=self.timeout``. A grpc error it
        raises becomes the matching :class:`RegistryError`.
        """
        last = "no attempt made"
        for round_ in range(self.retry.rounds):
            if round_:
                self._sleep(self.retry.backoff(round_ - 1, self._rng))
            for _ in range(len(self.addresses)):
                slot = self._acquire()
                try:
                    return op(slot.channel)
                except grpc.RpcError as exc:
                    if _code(exc) != grpc.StatusCode.UNAVAILABLE:
                        raise from_rpc_error(exc, self.addresses) from None
                    last = _details(exc)
                finally:
                    self._release(slot)
                self._fail_over(slot)
        raise _exhausted(self.addresses, last, self.retry.rounds, self._tls.mutual)

    def close(self) -> None:
        """Close the channel once running calls have returned. Idempotent."""
        ready = self._shutdown()
        if ready is not None:
            self._dispose(ready.channel)

    def __enter__(self) -> RegistryChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRegistryChannel(_ChannelSet[grpc.aio.Channel]):
    """The grpc.aio flavour of :class:`RegistryChannel` (same retry and swap rules)."""

    def __init__(
        self,
        addresses: str | Sequence[str],
        tls: TLSConfig,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(addresses, tls, timeout=timeout, retry=retry, rng=rng)
        self._sleep = sleep
        self._closing: set[asyncio.Task[None]] = set()

    def _make(self, address: str, tls: TLSConfig) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(address, tls.credentials(), options=tls.options())

    def _dispose(self, channel: grpc.aio.Channel) -> None:
        task = asyncio.get_running_loop().create_task(channel.close())
        # Keep a reference until it finishes, or the task may be collected mid-close.
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def call(self, op: Callable[[grpc.aio.Channel], Awaitable[T]]) -> T:
        last = "no attempt made"
        for round_ in range(self.retry.rounds):
            if round_:
                await self._sleep(self.retry.backoff(round_ - 1, self._rng))
            for _ in range(len(self.addresses)):
                slot = self._acquire()
                try:
                    return await op(slot.channel)
                except grpc.RpcError as exc:
                    if _code(exc) != grpc.StatusCode.UNAVAILABLE:
                        raise from_rpc_error(exc, self.addresses) from None
                    last = _details(exc)
                finally:
                    self._release(slot)
                self._fail_over(slot)
        raise _exhausted(self.addresses, last, self.retry.rounds, self._tls.mutual)

    async def close(self) -> None:
        ready = self._shutdown()
        if ready is not None:
            await ready.channel.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def __aenter__(self) -> AsyncRegistryChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _code(exc: grpc.RpcError) -> grpc.StatusCode:
    code = getattr(exc, "code", None)
    return code() if callable(code) else grpc.StatusCode.UNKNOWN


def _details(exc: grpc.RpcError) -> str:
    details = getattr(exc, "details", None)
    text = details() if callable(details) else None
    return str(text) if text else "UNAVAILABLE"


def _exhausted(
    addresses: tuple[str, ...], last: str, rounds: int, mutual: bool
) -> RegistryError:
    tries = "once" if rounds == 1 else f"{rounds} times"
    return unavailable(addresses, f"{last} (tried each address {tries})", mutual=mutual)
