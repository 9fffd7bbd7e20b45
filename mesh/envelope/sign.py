"""Signing: the only way an agent makes an :class:`Envelope`."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from mesh.did import DID
from mesh.envelope.models import NONCE_MIN_BYTES, Envelope, with_signature
from mesh.keys import IdentityKey

DEFAULT_TTL = timedelta(minutes=5)


def message_times(ttl: timedelta, now: datetime | None) -> tuple[int, int]:
    """``(issued_at, expires_at)`` in Unix seconds for a message valid ``ttl`` from ``now``."""
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware, e.g. datetime.now(UTC)")
    seconds = ttl.total_seconds()
    if seconds < 1 or seconds != int(seconds):
        raise ValueError(f"ttl must be a positive whole number of seconds, got {ttl}")
    issued_at = int(now.timestamp())
    return issued_at, issued_at + int(seconds)


def new_nonce() -> bytes:
    """A fresh random nonce (16 bytes from the OS CSPRNG)."""
    return secrets.token_bytes(NONCE_MIN_BYTES)


def sign_message(
    key: IdentityKey,
    sender: DID | str,
    payload_type: str,
    payload: bytes,
    audience: str,
    ttl: timedelta = DEFAULT_TTL,
    now: datetime | None = None,
    nonce: bytes | None = None,
) -> Envelope:
    """Sign ``payload`` for ``audience`` as ``sender`` (whose current key is ``key``).

    ``now`` defaults to the current time; it is truncated to whole seconds.
    ``nonce`` defaults to 16 fresh random bytes; pass one only to re-create a
    message deterministically (tests, vectors). Raises
    :class:`~mesh.envelope.errors.MalformedMessage` if a field is unfit.
    """
    # A string sender gets the envelope's cheap structural check; the verifier's key
    # resolver is what binds a DID to its keys.
    sender_text = str(sender)
    issued_at, expires_at = message_times(ttl, now)
    unsigned = Envelope(
        payload_type=payload_type,
        sender=sender_text,
        kid=key.kid,
        audience=audience,
        issued_at=issued_at,
        expires_at=expires_at,
        nonce=new_nonce() if nonce is None else nonce,
        payload=payload,
        signature=bytes(64),
    )
    # The signature is not part of the signed bytes: sign what the placeholder built.
    return with_signature(unsigned, key.sign(unsigned.signed_bytes))
