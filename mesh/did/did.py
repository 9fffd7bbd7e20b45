"""``did:mesh:<id>`` — the identity an agent keeps for life.

Derivation (see docs/identity.md for the published test vectors)::

    id  = base58btc( SHA-256(inception_public_key)[:20] )     # Bitcoin alphabet
    did = "did:mesh:" + id

The inception key is the agent's first Ed25519 public key (32 raw bytes).
Keys rotate under the DID; the DID never changes. Only the canonical base58
form is accepted, so one agent has exactly one spelling of its DID.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mesh.did import _base58
from mesh.ed25519 import check_public_key
from mesh.errors import InvalidIdentifier

DID_METHOD = "mesh"
DID_PREFIX = f"did:{DID_METHOD}:"
ID_BYTES = 20
# 20 bytes need at most 28 base58 characters; cap the input before decoding it.
_MAX_ID_CHARS = 28
_ALPHABET = frozenset(_base58.ALPHABET)


@dataclass(frozen=True, slots=True)
class DID:
    """A validated ``did:mesh`` identifier; build it with ``from_public_key`` or ``parse``."""

    id: str

    def __post_init__(self) -> None:
        _check_id(self.id)

    @classmethod
    def from_public_key(cls, inception_public_key: bytes) -> DID:
        """Derive the DID of an agent from its inception Ed25519 public key."""
        check_public_key(inception_public_key)
        digest = hashlib.sha256(inception_public_key).digest()[:ID_BYTES]
        # The canonical encoding of 20 bytes by construction: no need to check it
        # back (``__post_init__`` would decode and re-encode it).
        did = object.__new__(cls)
        object.__setattr__(did, "id", _base58.encode(digest))
        return did

    @classmethod
    def parse(cls, text: str) -> DID:
        """Parse ``did:mesh:<id>``; raise :class:`InvalidIdentifier` saying what is wrong."""
        if not isinstance(text, str):
            raise InvalidIdentifier(f"a DID is a string, got {type(text).__name__}")
        parts = text.split(":", 2)
        if len(parts) != 3 or parts[0] != "did":
            raise InvalidIdentifier(
                f"{text[:80]!r} is not a DID",
                hint="a trustmesh DID looks like did:mesh:<base58 id>",
            )
        if parts[1] != DID_METHOD:
            raise InvalidIdentifier(
                f"unsupported DID method {parts[1][:40]!r}",
                hint="trustmesh only issues and resolves did:mesh identifiers",
            )
        return cls(parts[2])

    @property
    def digest(self) -> bytes:
        """The 20 bytes the id encodes."""
        return _base58.decode(self.id)

    def matches_key(self, inception_public_key: bytes) -> bool:
        """True when this DID was derived from ``inception_public_key``."""
        try:
            return DID.from_public_key(inception_public_key) == self
        except Exception:
            return False

    def __str__(self) -> str:
        return DID_PREFIX + self.id


def _check_id(value: str) -> None:
    if not value:
        raise InvalidIdentifier("the DID has an empty id", hint="expected did:mesh:<base58 id>")
    if len(value) > _MAX_ID_CHARS:
        raise InvalidIdentifier(
            f"the DID id is {len(value)} characters; a did:mesh id has at most {_MAX_ID_CHARS}",
        )
    bad = sorted(set(value) - _ALPHABET)
    if bad:
        raise InvalidIdentifier(
            f"the DID id has characters outside base58btc: {''.join(bad)!r}",
            hint="base58btc has no 0, O, I or l",
        )
    raw = _base58.decode(value)
    if len(raw) != ID_BYTES:
        raise InvalidIdentifier(
            f"the DID id decodes to {len(raw)} bytes; a did:mesh id is {ID_BYTES} bytes",
        )
    if _base58.encode(raw) != value:
        raise InvalidIdentifier("the DID id is not in canonical base58btc form")
