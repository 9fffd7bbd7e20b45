"""JWT-SVIDs: parsing and validating them exactly as the JWT-SVID spec says.

:func:`parse_and_validate_jwt_svid` is an ordered checklist; each step fails
with an :class:`SVIDError` whose ``rule`` names it:

1. ``serialization`` JWS Compact Serialization, three base64url parts (spec 5.1)
2. ``header``        a JSON object holding only ``alg``, ``kid`` and ``typ``; ``typ``,
                     when set, is ``JWT`` or ``JOSE`` (spec 2, 2.3)
3. ``alg``           RS256/384/512, ES256/384/512 or PS256/384/512; never ``none``,
                     HS* or EdDSA (spec 2.1)
4. ``kid``           present (a trustmesh rule: the spec makes it optional, but a
                     bundle can hold several keys and guessing among them is how
                     key-confusion bugs start)
5. ``claims``        the payload is a JSON object with no repeated member
6. ``kid``           found among the JWT authorities of the bundle, and the key's
                     type and curve fit ``alg`` (else ``alg``)
7. ``signature``     the JWS signature verifies (joserfc) (spec 4)
8. ``sub``           a SPIFFE ID in the bundle's trust domain (spec 3.1)
9. ``aud``           present, and containing the audience this validator expects (spec 3.2)
10. ``exp``          present and not past, with a small leeway (spec 3.3)
11. ``nbf``          when present, not in the future, with the same leeway (RFC 7519 4.1.5)

The claims are read before the signature is checked only to pick the bundle
of the token's trust domain when several are given; nothing read from them is
trusted before step 7.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from mesh.bundle import Bundle, JWTAuthority
from mesh.errors import InvalidIdentifier
from mesh.spiffeid import SpiffeID
from mesh.svid.errors import SVIDError
from mesh.svid.source import BundleSource, bundle_for

ALLOWED_ALGORITHMS: frozenset[str] = frozenset(
    {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"}
)
ALLOWED_HEADERS: frozenset[str] = frozenset({"alg", "kid", "typ"})
ALLOWED_TYPES: frozenset[str] = frozenset({"JWT", "JOSE"})
DEFAULT_LEEWAY = dt.timedelta(seconds=30)
# JWT-SVIDs carry a handful of claims; anything this large is not one.
MAX_TOKEN_BYTES = 16 * 1024

JWT_RULES: tuple[str, ...] = (
    "serialization",
    "header",
    "alg",
    "kid",
    "claims",
    "signature",
    "sub",
    "aud",
    "exp",
    "nbf",
)

_EC_CURVE_FOR_ALG = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class JWTSVID:
    """A validated JWT-SVID. ``token`` is the bearer credential: never log it."""

    spiffe_id: SpiffeID
    audience: tuple[str, ...]
    expiry: dt.datetime
    claims: Mapping[str, Any]
    header: Mapping[str, Any]
    token: str = field(repr=False)

    @property
    def kid(self) -> str:
        return str(self.header["kid"])

    def marshal(self) -> str:
        return self.token


def parse_and_validate_jwt_svid(
    token: str,
    bundle: BundleSource,
    audience: str | Collection[str],
    *,
    now: dt.datetime | None = None,
    leeway: dt.timedelta = DEFAULT_LEEWAY,
) -> JWTSVID:
    """Validate ``token`` for a validator known as ``audience`` (one name, or several).

    ``bundle`` is the bundle of the token's trust domain, or bundles keyed by
    trust domain. ``now`` defaults to the current time (naive means UTC).
    """
    expected = _expected_audience(audience)
    header_b64, claims_b64 = _check_serialization(token)  # 1
    header = _check_header(header_b64)  # 2
    alg = _check_alg(header)  # 3
    kid = _check_kid_present(header)  # 4
    claims = _json_object(claims_b64, "claims", "the JWT claims")  # 5
    trusted = _choose_bundle(bundle, claims)
    key = _check_kid_in_bundle(kid, alg, trusted)  # 6
    _check_signature(token, key, alg)  # 7
    spiffe_id = _check_sub(claims, trusted)  # 8
    audiences = _check_aud(claims, expected)  # 9
    when = _utc(now)
    expiry = _check_exp(claims, when, leeway)  # 10
    _check_nbf(claims, when, leeway)  # 11
    return JWTSVID(
        spiffe_id=spiffe_id,
        audience=audiences,
        expiry=expiry,
        claims=MappingProxyType(claims),
        header=MappingProxyType(header),
        token=token,
    )


# --- the steps -----------------------------------------------------------------------------------


def _check_serialization(token: str) -> tuple[str, str]:
    if not isinstance(token, str):
        raise SVIDError("serialization", f"a JWT-SVID is a string, got {type(token).__name__}")
    if not token:
        raise SVIDError("serialization", "the JWT-SVID is empty")
    if len(token) > MAX_TOKEN_BYTES:
        raise SVIDError(
            "serialization", f"the JWT-SVID is {len(token)} bytes; the limit is {MAX_TOKEN_BYTES}"
        )
    if token.lstrip().startswith("{"):
        raise SVIDError(
            "serialization",
            "the JWT-SVID uses JWS JSON Serialization",
            hint="JWT-SVIDs use JWS Compact Serialization only (header.payload.signature)",
        )
    parts = token.split(".")
    if len(parts) != 3:
        raise SVIDError(
            "serialization",
            f"the JWT-SVID has {len(parts)} dot-separated parts; a signed JWT has 3",
            hint="encrypted (5-part) JWTs are not SVIDs",
        )
    names = ("header", "payload", "signature")
    for name, part in zip(names, parts, strict=True):
        if not part:
            raise SVIDError("serialization", f"the JWT-SVID's {name} is empty")
        if not _B64URL.fullmatch(part) or len(part) % 4 == 1:
            raise SVIDError("serialization", f"the JWT-SVID's {name} is not unpadded base64url")
    return parts[0], parts[1]


def _check_header(header_b64: str) -> dict[str, Any]:
    header = _json_object(header_b64, "header", "the JOSE header")
    extra = sorted(set(header) - ALLOWED_HEADERS)
    if extra:
        raise SVIDError(
            "header",
            f"the JOSE header has parameters a JWT-SVID must not carry: {', '.join(extra)[:80]}",
            hint="a JWT-SVID header holds only alg, kid and typ",
        )
    if "typ" in header and header["typ"] not in ALLOWED_TYPES:
        raise SVIDError(
            "header", f"the JOSE header typ is {str(header['typ'])[:20]!r}; it must be JWT or JOSE"
        )
    return header


def _check_alg(header: Mapping[str, Any]) -> str:
    alg = header.get("alg")
    if alg is None:
        raise SVIDError("alg", "the JOSE header has no alg")
    if not isinstance(alg, str):
        raise SVIDError("alg", f"the JOSE header alg is a {type(alg).__name__}, not a string")
    if alg in ALLOWED_ALGORITHMS:
        return alg
    if alg.lower() == "none":
        reason = "unsigned tokens ('none') are never accepted"
    elif alg.startswith("HS"):
        reason = "HMAC is symmetric; a JWT-SVID is signed with an authority's private key"
    elif alg in ("EdDSA", "Ed25519", "Ed448"):
        reason = "the JWT-SVID spec does not allow EdDSA"
    else:
        reason = "it is not an allowed JWT-SVID algorithm"
    raise SVIDError(
        "alg",
        f"the JWT-SVID alg {alg[:20]!r} is rejected: {reason}",
        hint="allowed: " + ", ".join(sorted(ALLOWED_ALGORITHMS)),
    )


def _check_kid_present(header: Mapping[str, Any]) -> str:
    kid = header.get("kid")
    if kid is None:
        raise SVIDError(
            "kid",
            "the JOSE header has no kid",
            hint="trustmesh requires kid on JWT-SVIDs to select the authority key",
        )
    if not isinstance(kid, str) or not kid:
        raise SVIDError("kid", "the JOSE header kid must be a non-empty string")
    return kid


def _choose_bundle(source: BundleSource, claims: Mapping[str, Any]) -> Bundle:
    if isinstance(source, Bundle):
        return source
    # Several bundles: the (not yet verified) subject only selects which one may vouch.
    spiffe_id = _sub(claims)
    return bundle_for(source, spiffe_id.trust_domain, "sub")


def _check_kid_in_bundle(kid: str, alg: str, bundle: Bundle) -> JWTAuthority:
    key = bundle.jwt_authority(kid)
    if key is None:
        raise SVIDError(
            "kid",
            f"no JWT authority with kid {kid[:60]!r} in the bundle of {bundle.trust_domain}",
            hint="the token was signed by an unknown or retired key; refresh the bundle",
        )
    if isinstance(key, ec.EllipticCurvePublicKey):
        curve = _EC_CURVE_FOR_ALG.get(alg)
        if curve is None or key.curve.name != curve:
            raise SVIDError(
                "alg", f"alg {alg} does not fit the {key.curve.name} EC key of kid {kid[:60]!r}"
            )
    elif isinstance(key, rsa.RSAPublicKey) and not alg.startswith(("RS", "PS")):
        raise SVIDError("alg", f"alg {alg} does not fit the RSA key of kid {kid[:60]!r}")
    return key


def _check_signature(token: str, key: JWTAuthority, alg: str) -> None:
    jose_key = ECKey.import_key(key) if isinstance(key, ec.EllipticCurvePublicKey) else (
        RSAKey.import_key(key)
    )
    try:
        jws.deserialize_compact(token, jose_key, algorithms=[alg])
    except JoseError as exc:
        raise SVIDError(
            "signature", f"the JWT-SVID signature does not verify ({exc.error})"
        ) from None
    except ValueError:
        raise SVIDError("signature", "the JWT-SVID signature does not verify") from None


def _sub(claims: Mapping[str, Any]) -> SpiffeID:
    sub = claims.get("sub")
    if sub is None:
        raise SVIDError("sub", "the JWT-SVID has no sub claim", hint="sub holds the SPIFFE ID")
    if not isinstance(sub, str):
        raise SVIDError("sub", f"the sub claim is a {type(sub).__name__}, not a string")
    try:
        return SpiffeID.parse(sub)
    except InvalidIdentifier as exc:
        raise SVIDError(
            "sub", f"the sub claim is not a valid SPIFFE ID: {exc.message}", hint=exc.hint
        ) from None


def _check_sub(claims: Mapping[str, Any], bundle: Bundle) -> SpiffeID:
    spiffe_id = _sub(claims)
    if spiffe_id.trust_domain != bundle.trust_domain:
        raise SVIDError(
            "sub",
            f"the JWT-SVID names {spiffe_id}, outside trust domain {bundle.trust_domain} "
            "whose key signed it",
            hint="a trust domain's authorities vouch only for its own SPIFFE IDs",
        )
    return spiffe_id


def _check_aud(claims: Mapping[str, Any], expected: frozenset[str]) -> tuple[str, ...]:
    aud = claims.get("aud")
    if aud is None:
        raise SVIDError(
            "aud", "the JWT-SVID has no aud claim", hint="JWT-SVIDs must name an audience"
        )
    values: tuple[str, ...]
    if isinstance(aud, str):
        values = (aud,)
    elif isinstance(aud, list) and all(isinstance(v, str) for v in aud):
        values = tuple(aud)
    else:
        raise SVIDError("aud", "the aud claim must be a string or a list of strings")
    if not values or not any(values):
        raise SVIDError("aud", "the aud claim is empty")
    if expected.isdisjoint(values):
        shown = ", ".join(repr(v[:60]) for v in values[:5])
        raise SVIDError(
            "aud",
            f"the JWT-SVID is for audience {shown}, not for {', '.join(sorted(expected))}",
            hint="ask for a JWT-SVID whose audience is this service",
        )
    return values


def _check_exp(claims: Mapping[str, Any], now: dt.datetime, leeway: dt.timedelta) -> dt.datetime:
    expiry = _numeric_date(claims, "exp")
    if expiry is None:
        raise SVIDError("exp", "the JWT-SVID has no exp claim", hint="JWT-SVIDs must expire")
    if now > expiry + leeway:
        raise SVIDError(
            "exp",
            f"the JWT-SVID expired at {expiry.isoformat()} (now {now.isoformat()})",
            hint="fetch a fresh JWT-SVID",
        )
    return expiry


def _check_nbf(claims: Mapping[str, Any], now: dt.datetime, leeway: dt.timedelta) -> None:
    not_before = _numeric_date(claims, "nbf")
    if not_before is not None and now + leeway < not_before:
        raise SVIDError(
            "nbf",
            f"the JWT-SVID is not valid before {not_before.isoformat()} (now {now.isoformat()})",
            hint="check this host's clock",
        )


# --- helpers -------------------------------------------------------------------------------------


def _expected_audience(audience: str | Collection[str]) -> frozenset[str]:
    try:
        values = frozenset((audience,) if isinstance(audience, str) else audience)
    except TypeError:
        values = frozenset()
    if not values or not all(isinstance(v, str) and v for v in values):
        raise SVIDError(
            "aud",
            "no audience to validate against",
            hint="pass the name this service is known by (for example its SPIFFE ID)",
        )
    return values


def _numeric_date(claims: Mapping[str, Any], name: str) -> dt.datetime | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SVIDError(name, f"the {name} claim must be a number of seconds since the epoch")
    try:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise SVIDError(name, f"the {name} claim {value} is out of range") from None


def _json_object(segment: str, rule: str, what: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except _Duplicate as exc:
        raise SVIDError(rule, f"{what} repeats the member {exc.args[0][:40]!r}") from None
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError):
        raise SVIDError(rule, f"{what} is not base64url-encoded JSON") from None
    if not isinstance(value, dict):
        raise SVIDError(rule, f"{what} is not a JSON object")
    return value


class _Duplicate(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Duplicate members (two "sub"s, two "aud"s) are read differently by different parsers.
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise _Duplicate(name)
        result[name] = value
    return result


def _utc(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    return now.replace(tzinfo=dt.UTC) if now.tzinfo is None else now.astimezone(dt.UTC)
