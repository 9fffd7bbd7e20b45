"""Registration challenges that cost no database write to issue.

A challenge nonce (32 bytes) is ``random(12) || expiry(u32, Unix seconds) ||
HMAC-SHA256(key, tag || trust domain || random || expiry)[:16]``. Only this
registry (and its replicas, which share ``DIR/challenge.key`` as they share the
CA) can mint one, and it says itself until when it is valid, so GetChallenge
needs no store write. One-time use is enforced where it matters: Register
records the nonce in the ``challenges`` table inside its own transaction, and a
second use of the same nonce collides with that row.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

from registry.status import precondition

TAG = b"trustmesh/register-challenge/v1"
RANDOM_BYTES = 12
MAC_BYTES = 16
KEY_BYTES = 32
NONCE_BYTES = RANDOM_BYTES + 4 + MAC_BYTES


class ChallengeMinter:
    def __init__(self, key: bytes, trust_domain: str, ttl: timedelta) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("the challenge key is 32 bytes")
        self._prefix = TAG + trust_domain.encode("utf-8")
        self._ttl = ttl
        # HMAC-SHA256 (RFC 2104) with the keyed inner and outer states made once:
        # each MAC then costs two small hash updates. (``hmac.digest`` would release
        # the GIL on every call, and the event loop thread would wait to get it back
        # from the store's busy writer thread.)
        block = key.ljust(hashlib.sha256().block_size, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def _mac(self, body: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(self._prefix + body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:MAC_BYTES]

    def mint(self, now: datetime | None = None) -> tuple[bytes, datetime]:
        now = now or datetime.now(UTC)
        expires = int((now + self._ttl).timestamp())
        body = secrets.token_bytes(RANDOM_BYTES) + expires.to_bytes(4, "big")
        return body + self._mac(body), datetime.fromtimestamp(expires, UTC)

    def check(self, nonce: bytes, now: datetime | None = None) -> datetime:
        """The nonce's expiry; FAILED_PRECONDITION if it was not minted here or has expired."""
        hint = "call GetChallenge and sign the new nonce"
        body, mac = nonce[: RANDOM_BYTES + 4], nonce[RANDOM_BYTES + 4 :]
        if len(nonce) != NONCE_BYTES or not hmac.compare_digest(mac, self._mac(body)):
            raise precondition(f"challenge: unknown to this registry; {hint}")
        expires = datetime.fromtimestamp(int.from_bytes(body[RANDOM_BYTES:], "big"), UTC)
        if expires <= (now or datetime.now(UTC)):
            raise precondition(f"challenge: expired at {expires.isoformat()}; {hint}")
        return expires


def load_or_create_key(path: Path) -> bytes:
    """The shared challenge key in the data directory (0600), made on first start."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = secrets.token_bytes(KEY_BYTES)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        return key
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path} is not a 32-byte challenge key; delete it to make a new one")
    return key
