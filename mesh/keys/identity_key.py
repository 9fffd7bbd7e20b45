"""An agent's Ed25519 identity key: made on the agent, never sent anywhere."""

from __future__ import annotations

import base64
import hashlib

from nacl.signing import SigningKey

from mesh.did import DID
from mesh.ed25519 import check_public_key


def key_id(public_key: bytes) -> str:
    """The key id (``kid``) of an Ed25519 public key: its RFC 7638 JWK thumbprint.

    A standard JOSE library computes the same value from the sender's public
    JWK, so JWS ``kid`` headers and envelope key ids agree everywhere.
    """
    check_public_key(public_key)
    x = base64.urlsafe_b64encode(public_key).rstrip(b"=")
    # RFC 7638: required members only, lexicographic order, no whitespace. ``x`` is
    # base64url, which JSON never escapes, so the members are spelled directly
    # (the same bytes json.dumps gives; a test compares them).
    canonical = b'{"crv":"Ed25519","kty":"OKP","x":"' + x + b'"}'
    digest = hashlib.sha256(canonical).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class IdentityKey:
    """A private Ed25519 key with the few operations an agent needs.

    ``repr()`` never shows key material.
    """

    __slots__ = ("_signing_key", "kid", "public_key")

    def __init__(self, signing_key: SigningKey) -> None:
        self._signing_key = signing_key
        self.public_key: bytes = bytes(signing_key.verify_key)
        check_public_key(self.public_key)
        self.kid: str = key_id(self.public_key)

    @classmethod
    def generate(cls) -> IdentityKey:
        return cls(SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> IdentityKey:
        """Rebuild a key from its 32-byte seed (RFC 8032 private key)."""
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        return cls(SigningKey(seed))

    def seed(self) -> bytes:
        """The 32-byte private seed. Only for writing the key file; never log it."""
        return bytes(self._signing_key)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return bytes(self._signing_key.sign(data).signature)

    def did(self) -> DID:
        """The DID this key would found if it were an agent's inception key."""
        return DID.from_public_key(self.public_key)

    def __repr__(self) -> str:
        return f"IdentityKey(kid={self.kid!r})"
