"""A replay guard shared by every process of a service, kept in Redis.

Each accepted nonce is one key, ``<namespace>:<sender>:<nonce hex>``, written
with one atomic ``SET key 1 NX PXAT <ms>``: of any number of processes racing
on the same message, exactly one sees the key created. Redis expires the key
when the message can no longer be accepted, so the guard needs no sweeping.

The ``redis`` package is an optional extra (``pip install 'trustmesh[redis]'``);
it is imported when a guard is made, never by ``import mesh``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from mesh.errors import MeshError
from mesh.replay.errors import ReplayGuardUnavailable

DEFAULT_NAMESPACE = "trustmesh:replay"
# Bound on a namespace: it prefixes every key.
MAX_NAMESPACE_CHARS = 200


def _import_redis() -> Any:
    try:
        import redis
    except ImportError:
        raise MeshError(
            "the Redis replay guard needs the redis package, which is not installed",
            hint="install the extra: pip install 'trustmesh[redis]' (or use replay: memory)",
        ) from None
    return redis


class RedisReplayGuard:
    """Remembers nonces in Redis until their messages expire; atomic across processes.

    ``url`` is a Redis URL (``redis://host:6379/0``, ``rediss://`` for TLS,
    ``unix:///path``). ``namespace`` separates services sharing one Redis: two
    services with different namespaces never see each other's nonces. When
    Redis cannot be reached the guard raises :class:`ReplayGuardUnavailable`
    (fail closed): accepting a message whose nonce could not be recorded would
    let it be replayed.
    """

    __slots__ = ("_client", "_clock", "_errors", "_namespace", "url")

    def __init__(
        self,
        url: str,
        namespace: str = DEFAULT_NAMESPACE,
        *,
        socket_timeout: float = 2.0,
        clock: Callable[[], float] = time.time,
        client: Any = None,
    ) -> None:
        if not namespace or len(namespace) > MAX_NAMESPACE_CHARS or any(
            c.isspace() for c in namespace
        ):
            raise MeshError(
                f"invalid replay namespace {namespace[:60]!r}",
                hint=f"use 1..{MAX_NAMESPACE_CHARS} characters without spaces, "
                "e.g. the service's name",
            )
        redis = _import_redis()
        self.url = url
        self._namespace = namespace
        self._clock = clock
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        if client is None:
            try:
                client = redis.Redis.from_url(
                    url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
                )
            except ValueError as exc:
                raise MeshError(
                    f"invalid Redis URL {url!r}: {exc}",
                    hint="write it as redis://HOST:PORT/DB (rediss:// for TLS)",
                ) from None
        self._client = client

    @property
    def namespace(self) -> str:
        return self._namespace

    def key(self, sender: str, nonce: bytes) -> str:
        """The Redis key remembering ``(sender, nonce)``."""
        return f"{self._namespace}:{sender}:{nonce.hex()}"

    def check_and_remember(self, sender: str, nonce: bytes, expires_at: datetime) -> bool:
        # Rounded up to the millisecond, so a nonce is never forgotten early.
        until_ms = math.ceil(expires_at.timestamp() * 1000)
        if until_ms <= math.floor(self._clock() * 1000):
            # Already past its window: the verifier refuses such a message on time
            # anyway, and Redis would reject a PXAT in the past as a no-op "set".
            return True
        try:
            created = self._client.set(self.key(sender, nonce), b"1", nx=True, pxat=until_ms)
        except self._errors as exc:
            raise ReplayGuardUnavailable(
                f"the replay guard's Redis at {self.url} did not answer: {exc}",
                hint="check that Redis is running and reachable; messages are refused "
                "until it is (a nonce that cannot be recorded could be replayed)",
            ) from None
        return bool(created)

    def ping(self) -> None:
        """Raise :class:`ReplayGuardUnavailable` unless Redis answers."""
        try:
            self._client.ping()
        except self._errors as exc:
            raise ReplayGuardUnavailable(
                f"the replay guard's Redis at {self.url} did not answer: {exc}",
                hint="check that Redis is running and reachable",
            ) from None

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"RedisReplayGuard(url={self.url!r}, namespace={self._namespace!r})"
