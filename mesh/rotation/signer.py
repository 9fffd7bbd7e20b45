"""The key that signs at an instant, across rotations.

A rotation recorded at ``T`` (a whole second, see :func:`next_whole_second`)
means: messages issued before ``T`` are the old key's, messages issued at or
after ``T`` the new key's. An agent that rotates at ``now`` picks ``T`` in the
next second, so for the rest of the current second it keeps signing with the
old key (its verifiers accept it: issued before ``T``, inside the grace), and
from ``T`` on it signs with the new key (which its verifiers hold: the
registry accepted the rotation before the agent switched).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from mesh.envelope import Envelope, sign_message
from mesh.errors import MeshError
from mesh.keyhistory import KeyHistory
from mesh.keys import IdentityKey

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class RotatingSigner:
    """Signs envelopes for one DID with whichever key the history says is current now.

    Thread-safe: :meth:`adopt` (after the registry accepted a rotation) and
    :meth:`sign` may run concurrently. Holds at most the previous and the
    current key.
    """

    def __init__(self, key: IdentityKey, history: KeyHistory, *, clock: Clock = _utc_now) -> None:
        if history.current.kid != key.kid:
            raise MeshError(
                f"key {key.kid} is not the current key of the history ({history.current.kid})",
                hint="pass the key the history was last rotated to",
            )
        self._lock = threading.Lock()
        self._clock = clock
        self._history = history
        self._keys = {key.kid: key}

    @property
    def did(self) -> str:
        return str(self._history.did)

    @property
    def history(self) -> KeyHistory:
        return self._history

    def adopt(self, key: IdentityKey, history: KeyHistory) -> None:
        """Switch to ``key`` from its rotation time on (the history must extend ours)."""
        with self._lock:
            if not self._history.is_prefix_of(history) or history.current.kid != key.kid:
                raise MeshError(
                    "the new key history does not extend the signer's, or does not end in the "
                    "given key",
                    hint="adopt the history the registry accepted, with its new key",
                )
            previous = self._keys.get(self._history.current.kid)
            self._keys = {key.kid: key}
            if previous is not None:
                self._keys[previous.kid] = previous
            self._history = history

    def key_at(self, at: datetime) -> IdentityKey:
        """The key that signs a message issued at ``at`` (whole seconds)."""
        with self._lock:
            period = self._history.active_at(at.replace(microsecond=0))
            key = self._keys.get(period.kid) if period is not None else None
            if key is None:
                key = self._keys[self._history.current.kid]
            return key

    def sign(
        self,
        payload: bytes,
        *,
        audience: str,
        payload_type: str = "application/json",
        ttl: timedelta = timedelta(minutes=5),
    ) -> Envelope:
        now = self._clock()
        key = self.key_at(now)
        return sign_message(key, self.did, payload_type, payload, audience, ttl=ttl, now=now)


__all__ = ["RotatingSigner"]
