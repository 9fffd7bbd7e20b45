"""The one Ed25519 policy of trustmesh, used wherever a signature is checked.

Strict, as libsodium implements it: a signature is rejected when S >= L, when
A or R is not canonically encoded, or when A or R has small order. PyNaCl's
``crypto_sign_open`` applies exactly these rules (checked against the
Wycheproof and CCTV vectors in tests/) and is about twice as fast as
``cryptography`` here, so every verification in the project goes through
:func:`verify_strict`.

Keys we *accept* (at registration, in key histories, when loading a peer's
key) must be stricter still: canonical, not of small order, and in the
prime-order subgroup. An honest key always is; anything else is a weak key.
"""

from __future__ import annotations

import functools

from nacl.bindings import crypto_core_ed25519_is_valid_point, crypto_sign_open
from nacl.exceptions import BadSignatureError

from mesh.errors import WeakKeyError

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64


def verify_strict(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid strict Ed25519 signature of ``message``.

    Never raises for bad input: wrong lengths and every malformed encoding
    simply do not verify.
    """
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        crypto_sign_open(signature + message, public_key)
    except BadSignatureError:
        return False
    return True


@functools.lru_cache(maxsize=4096)
def _valid_point(public_key: bytes) -> bool:
    # A point check costs about a scalar multiplication, and one key is checked
    # several times on its way through a request (its DID, its kid, the store):
    # remember the recent answers (a pure function of the 32 bytes).
    return bool(crypto_core_ed25519_is_valid_point(public_key))


def is_acceptable_public_key(public_key: bytes) -> bool:
    """True when the key is canonical, not of small order and in the main subgroup."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        return False
    return _valid_point(bytes(public_key))


def check_public_key(public_key: bytes) -> bytes:
    """Return ``public_key`` unchanged, or raise :class:`WeakKeyError` saying why not."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise WeakKeyError(
            f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}",
            hint="send the raw 32-byte public key, not a PEM/DER encoding or a private key",
        )
    if not _valid_point(bytes(public_key)):
        raise WeakKeyError(
            "the Ed25519 public key is non-canonical, of small order, or outside the "
            "prime-order subgroup",
            hint="generate a fresh key with `mesh key generate`; such keys are never accepted",
        )
    return public_key
