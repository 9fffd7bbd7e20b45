"""Proof of possession for Register.

The agent signs, with its Ed25519 identity key, the registry's one-time
challenge together with the trust domain it believes it is joining, its own
public key and the SHA-256 of its CSR. That binds one key to one fresh
challenge of one registry, and ties the P-256 key in the CSR to the identity
key, so a proof cannot be replayed elsewhere or reused with another CSR.
"""

from __future__ import annotations

import hashlib

from mesh._internal.encoding import length_prefixed
from mesh.ed25519 import verify_strict
from mesh.keys import IdentityKey

PROOF_TAG = b"trustmesh/register/v1"


def proof_message(trust_domain: str, challenge: bytes, public_key: bytes, csr_der: bytes) -> bytes:
    """The exact bytes signed as proof of possession."""
    return length_prefixed(
        PROOF_TAG,
        trust_domain.encode("utf-8"),
        challenge,
        public_key,
        hashlib.sha256(csr_der).digest(),
    )


def sign_proof(key: IdentityKey, trust_domain: str, challenge: bytes, csr_der: bytes) -> bytes:
    return key.sign(proof_message(trust_domain, challenge, key.public_key, csr_der))


def verify_proof(
    trust_domain: str, challenge: bytes, public_key: bytes, csr_der: bytes, proof: bytes
) -> bool:
    """True when ``proof`` is the strict Ed25519 signature of the proof message."""
    return verify_strict(
        public_key, proof_message(trust_domain, challenge, public_key, csr_der), proof
    )
