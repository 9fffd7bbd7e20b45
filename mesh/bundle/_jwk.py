"""Public keys as JWKs (RFC 7517/7518) for the SPIFFE bundle, with strict decoding.

Only the key types a bundle can carry are handled: EC P-256/P-384/P-521 and
RSA for both uses, and OKP Ed25519 for X.509 authorities (JWT-SVIDs have no
EdDSA algorithm, so an Ed25519 JWT authority could never verify anything).
"""

from __future__ import annotations

import base64
import re
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from mesh.bundle.errors import BundleError

JWTAuthority = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
X509AuthorityKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

MIN_RSA_BITS = 2048

# JOSE curve name -> (curve class, coordinate length in bytes, RFC 7518 6.2.1.2)
_CURVES: dict[str, tuple[type[ec.EllipticCurve], int]] = {
    "P-256": (ec.SECP256R1, 32),
    "P-384": (ec.SECP384R1, 48),
    "P-521": (ec.SECP521R1, 66),
}
# cryptography curve name -> (JOSE curve name, coordinate length)
_CURVE_NAMES: dict[str, tuple[str, int]] = {
    "secp256r1": ("P-256", 32),
    "secp384r1": ("P-384", 48),
    "secp521r1": ("P-521", 66),
}
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class UnsupportedKey(Exception):
    """A well-formed JWK of a type or curve this bundle reader does not use (spec: ignore it)."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(value: Any, where: str) -> bytes:
    """Strict base64url without padding, as JOSE requires."""
    if not isinstance(value, str) or not value:
        raise BundleError(f"{where} must be a non-empty base64url string")
    if not _B64URL.fullmatch(value) or len(value) % 4 == 1:
        raise BundleError(
            f"{where} is not valid unpadded base64url",
            hint="JOSE fields use the URL-safe alphabet with no '=' padding",
        )
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _uint(value: int, size: int | None = None) -> str:
    length = size if size is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(length, "big"))


def public_jwk(key: object, where: str) -> dict[str, str]:
    """The public JWK members (kty and key parameters) for ``key``."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        named = _CURVE_NAMES.get(key.curve.name)
        if named is None:
            raise BundleError(
                f"{where}: the EC curve {key.curve.name} cannot be published in a bundle",
                hint="use P-256, P-384 or P-521",
            )
        crv, size = named
        numbers = key.public_numbers()
        return {"kty": "EC", "crv": crv, "x": _uint(numbers.x, size), "y": _uint(numbers.y, size)}
    if isinstance(key, rsa.RSAPublicKey):
        rsa_numbers = key.public_numbers()
        return {"kty": "RSA", "n": _uint(rsa_numbers.n), "e": _uint(rsa_numbers.e)}
    if isinstance(key, ed25519.Ed25519PublicKey):
        from cryptography.hazmat.primitives import serialization

        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}
    raise BundleError(
        f"{where}: a {type(key).__name__} cannot be published in a bundle",
        hint="use an EC (P-256/P-384/P-521), RSA or Ed25519 key",
    )


def check_jwt_authority_key(key: object, where: str) -> JWTAuthority:
    """The key, if it can verify a JWT-SVID algorithm (RS*/PS*/ES*), else :class:`BundleError`."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVE_NAMES:
            raise BundleError(
                f"{where}: JWT-SVID keys use P-256, P-384 or P-521, not {key.curve.name}"
            )
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise BundleError(
                f"{where}: the RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are needed"
            )
        return key
    raise BundleError(
        f"{where}: a {type(key).__name__} cannot verify JWT-SVIDs",
        hint="JWT-SVIDs are signed with RS*, PS* or ES* keys only (no EdDSA, no HMAC)",
    )


def jwt_key_from_jwk(jwk: dict[str, Any], where: str) -> JWTAuthority:
    """Decode an EC or RSA public JWK; :class:`UnsupportedKey` for other well-formed types."""
    kty = jwk["kty"]
    if kty == "EC":
        crv = jwk.get("crv")
        if not isinstance(crv, str):
            raise BundleError(f"{where}: an EC key needs a 'crv' string")
        if crv not in _CURVES:
            raise UnsupportedKey(f"EC curve {crv!r}")
        curve_cls, size = _CURVES[crv]
        x = b64url_decode(jwk.get("x"), f"{where}.x")
        y = b64url_decode(jwk.get("y"), f"{where}.y")
        if len(x) != size or len(y) != size:
            raise BundleError(
                f"{where}: {crv} coordinates are {size} bytes each, got {len(x)} and {len(y)}"
            )
        if "d" in jwk:
            raise BundleError(
                f"{where} contains a private key ('d')",
                hint="a bundle publishes public keys only; remove 'd' and rotate that key",
            )
        try:
            return ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve_cls()
            ).public_key()
        except ValueError:
            raise BundleError(f"{where}: the point (x, y) is not on {crv}") from None
    if kty == "RSA":
        if any(p in jwk for p in ("d", "p", "q", "dp", "dq", "qi")):
            raise BundleError(
                f"{where} contains private RSA parameters",
                hint="a bundle publishes public keys only; remove them and rotate that key",
            )
        n = int.from_bytes(b64url_decode(jwk.get("n"), f"{where}.n"), "big")
        e = int.from_bytes(b64url_decode(jwk.get("e"), f"{where}.e"), "big")
        try:
            key = rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError as exc:
            raise BundleError(f"{where}: invalid RSA public key: {exc}") from None
        return check_jwt_authority_key(key, where)
    raise UnsupportedKey(f"key type {kty!r}")
