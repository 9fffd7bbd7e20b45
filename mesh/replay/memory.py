"""An in-process replay guard: bounded, thread-safe, and closed when full."""

from __future__ import annotations

import functools
import heapq
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime

from mesh.replay.errors import ReplayGuardFull

DEFAULT_MAX_ENTRIES = 100_000


@functools.lru_cache(maxsize=1024)
def _expiry_second(expires_at: datetime) -> int:
    # Cached: callers pass the same few datetimes (verifiers cache them per second too),
    # and a datetime caches its own hash.
    return math.ceil(expires_at.timestamp())


class MemoryReplayGuard:
    """Remembers nonces in memory until their messages expire.

    Size it as at least (peak accepted messages per second) x (the verifier's
    maximum message lifetime + clock skew). When ``max_entries`` unexpired
    nonces are held, new messages are refused with :class:`ReplayGuardFull`
    rather than forgetting a nonce that could still be replayed (fail closed);
    space returns as entries expire.

    Entries are grouped by the whole second they expire in (rounded up, so a
    nonce is never forgotten early); a small heap orders those seconds, and
    every call first drops the groups that have expired. Inserting is a set
    add and a list append; expiry costs O(1) per nonce.

    ``clock`` returns Unix seconds; give the guard the same clock as the
    verifier so both agree on when a message has expired.
    """

    __slots__ = ("_buckets", "_clock", "_heads", "_lock", "_max_entries", "_seen")

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._clock = clock
        self._seen: set[tuple[str, bytes]] = set()
        # expiry second -> the keys that expire in it; _heads is a heap of those seconds.
        self._buckets: dict[int, list[tuple[str, bytes]]] = {}
        self._heads: list[int] = []
        self._lock = threading.Lock()

    def check_and_remember(self, sender: str, nonce: bytes, expires_at: datetime) -> bool:
        until = _expiry_second(expires_at)
        key = (sender, nonce)
        with self._lock:
            heads = self._heads
            if heads and heads[0] <= self._clock():
                self._forget_expired()
            seen = self._seen
            if key in seen:
                return False
            if len(seen) >= self._max_entries:
                raise ReplayGuardFull(
                    f"the replay guard already holds {self._max_entries} unexpired nonces; "
                    "refusing new messages until some expire",
                    hint="raise max_entries to at least peak messages/s x (max lifetime + "
                    "skew), or use a shared replay guard",
                )
            seen.add(key)
            bucket = self._buckets.get(until)
            if bucket is None:
                self._buckets[until] = [key]
                heapq.heappush(heads, until)
            else:
                bucket.append(key)
            return True

    def _forget_expired(self) -> None:
        now = self._clock()
        heads, buckets, seen = self._heads, self._buckets, self._seen
        while heads and heads[0] <= now:
            for key in buckets.pop(heapq.heappop(heads)):
                seen.discard(key)

    def __len__(self) -> int:
        """How many nonces are held (some may have expired since the last call)."""
        with self._lock:
            return len(self._seen)
