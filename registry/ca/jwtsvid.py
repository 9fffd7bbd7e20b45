"""JWT-SVID signing: ES256 with the active JWT authority (joserfc).

Header ``{"alg": "ES256", "kid": <authority kid>, "typ": "JWT"}``; claims
``sub`` (the SPIFFE ID), ``aud`` (as given: one string or a list), ``exp`` and
``iat`` (NumericDate seconds). ``exp`` = min(now + ttl, the key's notAfter);
``ttl`` defaults to 5 minutes and is capped at :data:`MAX_JWT_SVID_TTL`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from joserfc import jwt
from joserfc.jwk import ECKey

from mesh.errors import InvalidIdentifier
from mesh.spiffeid import SpiffeID
from registry.ca.authority import AuthorityState, JWTAuthority
from registry.ca.errors import CAStateError, JWTSVIDRequestRejected

ALGORITHM = "ES256"
DEFAULT_JWT_SVID_TTL = timedelta(minutes=5)
MAX_JWT_SVID_TTL = timedelta(hours=1)
MAX_AUDIENCES = 16
MAX_AUDIENCE_BYTES = 512


def check_audience(audience: str | Sequence[str]) -> str | list[str]:
    """A non-empty audience: one string or 1..16 strings, each 1..512 bytes."""
    if isinstance(audience, str):
        _check_one_audience(audience)
        return audience
    if not isinstance(audience, Sequence) or isinstance(audience, bytes | bytearray):
        raise JWTSVIDRequestRejected(
            f"the audience must be a string or a list of strings, got {type(audience).__name__}",
        )
    values = list(audience)
    if not values:
        raise JWTSVIDRequestRejected(
            "the audience is empty; a JWT-SVID is always for someone",
            hint="name at least one audience (the service that will verify the token)",
        )
    if len(values) > MAX_AUDIENCES:
        raise JWTSVIDRequestRejected(
            f"{len(values)} audiences; the limit is {MAX_AUDIENCES}",
            hint="ask for one token per audience",
        )
    unique: list[str] = []
    for value in values:
        _check_one_audience(value)
        if value not in unique:
            unique.append(value)
    return unique


def _check_one_audience(value: object) -> None:
    if not isinstance(value, str):
        raise JWTSVIDRequestRejected(f"each audience must be a string, got {type(value).__name__}")
    if not value or not value.strip():
        raise JWTSVIDRequestRejected(
            "an audience is empty", hint="name the service that will verify the token"
        )
    size = len(value.encode("utf-8"))
    if size > MAX_AUDIENCE_BYTES:
        raise JWTSVIDRequestRejected(
            f"an audience is {size} bytes; the limit is {MAX_AUDIENCE_BYTES}",
            hint="use a short audience name, e.g. a SPIFFE ID or a service URL",
        )


@functools.lru_cache(maxsize=16)
def _signing_key(authority: JWTAuthority) -> ECKey:
    # Converting the key to a JWK costs about as much as a signature: do it once.
    return ECKey.import_key(authority.private_key, {"kid": authority.kid})


def sign_jwt_svid(
    authority: JWTAuthority,
    spiffe_id: SpiffeID | str,
    audience: str | Sequence[str],
    *,
    now: datetime,
    ttl: timedelta = DEFAULT_JWT_SVID_TTL,
    max_ttl: timedelta = MAX_JWT_SVID_TTL,
    trust_domain: str | None = None,
) -> str:
    """A compact JWS JWT-SVID. ``trust_domain``, if given, must be the ID's."""
    try:
        sid = spiffe_id if isinstance(spiffe_id, SpiffeID) else SpiffeID.parse(spiffe_id)
    except InvalidIdentifier as exc:
        raise JWTSVIDRequestRejected(exc.message, hint=exc.hint) from None
    if trust_domain is not None and sid.trust_domain.name != trust_domain:
        raise JWTSVIDRequestRejected(
            f"{sid} is outside this CA's trust domain {trust_domain}",
            hint=f"ask for an ID under spiffe://{trust_domain}/",
        )
    if sid.is_root:
        raise JWTSVIDRequestRejected(
            f"{sid} names the trust domain itself, not a workload",
            hint="a JWT-SVID's subject has a path",
        )
    aud = check_audience(audience)
    if not isinstance(ttl, timedelta) or ttl <= timedelta(0):
        raise JWTSVIDRequestRejected(
            f"the requested TTL {ttl!r} is not a positive duration",
            hint="ask for a positive lifetime, or omit it for the default (5 minutes)",
        )
    if authority.state is not AuthorityState.ACTIVE:
        raise CAStateError(
            f"JWT authority {authority.kid} is {authority.state.value}; only the active one signs"
        )
    expires = min(now + min(ttl, max_ttl), authority.not_after)
    if expires <= now:
        raise CAStateError(
            f"the JWT signing key {authority.kid} expired at {authority.not_after.isoformat()}",
            hint="rotate the JWT authority or fix the clock",
        )
    issued_at = math.floor(now.timestamp())
    claims = {
        "sub": str(sid),
        "aud": aud,
        "exp": max(math.floor(expires.timestamp()), issued_at + 1),
        "iat": issued_at,
    }
    header = {"alg": ALGORITHM, "kid": authority.kid, "typ": "JWT"}
    return jwt.encode(header, claims, _signing_key(authority), algorithms=[ALGORITHM])
