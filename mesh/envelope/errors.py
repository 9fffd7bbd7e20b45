"""Why a signed message was refused: one named error per rule of the checklist.

Every error is an :class:`EnvelopeError`, itself a :class:`mesh.errors.MeshError`,
so a caller can catch the family or one precise reason. ``reason`` is a short,
stable name (the class name) fit for logs, metrics and exit messages.
"""

from __future__ import annotations

from mesh.errors import MeshError


class EnvelopeError(MeshError):
    """A signed message (envelope or JWS) was refused."""

    @property
    def reason(self) -> str:
        return type(self).__name__


class MalformedMessage(EnvelopeError):
    """Rule 1, shape: the message does not parse, or a field is missing, mistyped or oversized."""


class UnknownKey(EnvelopeError):
    """Rule 2, key: no key with this id is known for this sender at the message's issued-at."""


class RevokedKey(EnvelopeError):
    """Rule 2, key: the key was revoked or compromised, or rotated out and past its grace."""


class BadSignature(EnvelopeError):
    """Rule 3, signature: the signature does not verify (strict Ed25519) over the signed bytes."""


class WrongAudience(EnvelopeError):
    """Rule 4, audience: the message is addressed to someone else."""


class LifetimeTooLong(EnvelopeError):
    """Rule 5, time: expires-at minus issued-at exceeds the verifier's maximum lifetime."""


class NotYetValid(EnvelopeError):
    """Rule 5, time: issued-at lies further in the future than the allowed clock skew."""


class Expired(EnvelopeError):
    """Rule 5, time: expires-at (plus the allowed clock skew) has passed."""


class Replayed(EnvelopeError):
    """Rule 6, replay: this sender's nonce was already accepted within its validity window."""


class KeyMismatch(MeshError):
    """A configured public key does not belong to the sender it was configured for."""
