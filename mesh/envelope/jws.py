"""The same signed message as a JWS Compact Serialization (RFC 7515), Ed25519.

Protected header (exactly these members)::

    {"alg": "EdDSA", "kid": <RFC 7638 thumbprint>, "typ": "trustmesh-message+jwt"}

Claims (exactly these members)::

    {"iss": <sender DID>, "aud": <audience>, "iat": <int>, "exp": <int>,
     "jti": <base64url nonce>, "pty": <payload type>, "payload": <base64url payload>}

The payload type is a claim, not a header parameter: JOSE libraries may refuse
unregistered header parameters (joserfc does, by default, with
UnsupportedHeaderError), while private claims are accepted everywhere. It is
signed either way.

Algorithm: we emit ``EdDSA`` (RFC 8037) by default because every mainstream
JOSE library verifies it today — PyJWT, for one, knows no other name for
Ed25519 yet. RFC 9864 deprecates ``EdDSA`` in favour of the fully-specified
``Ed25519``, which newer libraries (joserfc >= 1.5, among others) also verify;
pass ``alg="Ed25519"`` to emit that. Both are accepted on import, and both mean
exactly Ed25519 here: the key comes from our resolver, never from the token,
and is always a 32-byte Ed25519 key.

Verification runs the :class:`~mesh.envelope.verify.Verifier`'s checklist
unchanged; the signature is checked with :func:`mesh.ed25519.verify_strict`
over the JWS signing input.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from mesh.envelope._internal import b64url, strict_json
from mesh.envelope.errors import KeyMismatch, MalformedMessage
from mesh.envelope.models import Envelope, JwsMessage, VerifiedMessage, check_fields
from mesh.envelope.sign import DEFAULT_TTL, message_times, new_nonce
from mesh.envelope.verify import Verifier
from mesh.keys import IdentityKey

JWS_TYPE = "trustmesh-message+jwt"
ALG_EDDSA = "EdDSA"
ALG_ED25519 = "Ed25519"
DEFAULT_ALG = ALG_EDDSA
ACCEPTED_ALGS = frozenset((ALG_EDDSA, ALG_ED25519))
PAYLOAD_TYPE_CLAIM = "pty"
MAX_JWS_CHARS = (1 << 20) * 4 // 3 + 4096

_HEADER_MEMBERS = frozenset(("alg", "kid", "typ"))
_CLAIM_MEMBERS = frozenset(("iss", "aud", "iat", "exp", "jti", PAYLOAD_TYPE_CLAIM, "payload"))


def _bad(detail: str, hint: str | None = None) -> MalformedMessage:
    return MalformedMessage(f"malformed JWS: {detail}", hint=hint)


def sign_jws(
    key: IdentityKey,
    sender: str,
    payload_type: str,
    payload: bytes,
    audience: str,
    ttl: timedelta = DEFAULT_TTL,
    now: datetime | None = None,
    nonce: bytes | None = None,
    *,
    alg: str = DEFAULT_ALG,
) -> str:
    """Sign ``payload`` for ``audience`` as ``sender``, as JWS Compact. See :func:`sign_message`."""
    issued_at, expires_at = message_times(ttl, now)
    return _compact(
        key,
        alg,
        payload_type,
        str(sender),
        audience,
        issued_at,
        expires_at,
        new_nonce() if nonce is None else nonce,
        payload,
    )


def to_jws(envelope: Envelope, key: IdentityKey, *, alg: str = DEFAULT_ALG) -> str:
    """The same message as ``envelope`` (same fields, same nonce) as JWS Compact.

    The JWS signs other bytes, so it needs the sender's key, which must be the
    one the envelope names. Both forms share the nonce: a recipient accepts
    the message once, in whichever form arrives first.
    """
    if key.kid != envelope.kid:
        raise KeyMismatch(
            f"the envelope names key {envelope.kid}, this key is {key.kid}",
            hint="re-sign with the key the envelope was signed with",
        )
    return _compact(
        key,
        alg,
        envelope.payload_type,
        envelope.sender,
        envelope.audience,
        envelope.issued_at,
        envelope.expires_at,
        envelope.nonce,
        envelope.payload,
    )


def _compact(
    key: IdentityKey,
    alg: str,
    payload_type: str,
    sender: str,
    audience: str,
    issued_at: int,
    expires_at: int,
    nonce: bytes,
    payload: bytes,
) -> str:
    if alg not in ACCEPTED_ALGS:
        raise ValueError(f"alg must be one of {sorted(ACCEPTED_ALGS)}")
    # Refuse to emit anything our own verifier would call malformed.
    check_fields(
        payload_type, sender, key.kid, audience, issued_at, expires_at, nonce, payload, bytes(64)
    )
    header = strict_json.dump_compact({"alg": alg, "kid": key.kid, "typ": JWS_TYPE})
    claims = strict_json.dump_compact(
        {
            "iss": sender,
            "aud": audience,
            "iat": issued_at,
            "exp": expires_at,
            "jti": b64url.encode(nonce),
            PAYLOAD_TYPE_CLAIM: payload_type,
            "payload": b64url.encode(payload),
        }
    )
    signing_input = (
        b64url.encode(header.encode("ascii")) + "." + b64url.encode(claims.encode("ascii"))
    )
    return signing_input + "." + b64url.encode(key.sign(signing_input.encode("ascii")))


def parse_jws(compact: str | bytes) -> JwsMessage:
    """Rule 1 (shape) for the JWS form: parse ``compact`` or raise :class:`MalformedMessage`."""
    if isinstance(compact, bytes):
        try:
            compact = compact.decode("ascii")
        except UnicodeDecodeError:
            raise _bad("JWS Compact is ASCII text") from None
    if not isinstance(compact, str):
        raise _bad(f"expected JWS Compact text, got {type(compact).__name__}")
    compact = compact.strip()
    if len(compact) > MAX_JWS_CHARS:
        raise _bad(f"the JWS is {len(compact)} characters; the limit is {MAX_JWS_CHARS}")
    parts = compact.split(".")
    if len(parts) != 3:
        raise _bad(
            f"JWS Compact has 3 dot-separated parts, got {len(parts)}",
            hint="a JWE (5 parts) or JWS JSON serialization is not accepted",
        )
    header = _json_part(parts[0], "protected header")
    claims = _json_part(parts[1], "claims")
    _exact_members(header, _HEADER_MEMBERS, "protected header")
    _exact_members(claims, _CLAIM_MEMBERS, "claims")
    alg = header["alg"]
    if not isinstance(alg, str) or alg not in ACCEPTED_ALGS:
        raise _bad(
            f"alg {str(alg)[:40]!r} is not accepted",
            hint="trustmesh messages are signed with Ed25519: alg 'EdDSA' or 'Ed25519'",
        )
    if not _is_our_type(header["typ"]):
        raise _bad(
            f"typ {str(header['typ'])[:60]!r} is not {JWS_TYPE!r}",
            hint="this is not a trustmesh message (explicit typing, RFC 8725 §3.11)",
        )
    for name in ("iat", "exp"):
        if isinstance(claims[name], bool) or not isinstance(claims[name], int):
            raise _bad(f"{name} must be an integer NumericDate, got {claims[name]!r:.40}")
    if not isinstance(claims["aud"], str):
        raise _bad("aud must be a single string", hint="one message has one audience")
    nonce = _b64_member(claims, "jti")
    payload = _b64_member(claims, "payload")
    try:
        signature = b64url.decode(parts[2])
    except ValueError as exc:
        raise _bad(f"signature: {exc}") from None
    # JwsMessage checks every field's type, size and alphabet like an Envelope's.
    return JwsMessage(
        payload_type=claims[PAYLOAD_TYPE_CLAIM],
        sender=claims["iss"],
        kid=header["kid"],
        audience=claims["aud"],
        issued_at=claims["iat"],
        expires_at=claims["exp"],
        nonce=nonce,
        payload=payload,
        signature=signature,
        alg=alg,
        signed_bytes=(parts[0] + "." + parts[1]).encode("ascii"),
    )


def verify_jws(
    compact: str | bytes, verifier: Verifier, now: datetime | None = None
) -> VerifiedMessage:
    """Parse and verify a JWS Compact message with the same checklist as an envelope."""
    return verifier.verify(parse_jws(compact), now)


def _json_part(part: str, what: str) -> dict[str, Any]:
    try:
        return strict_json.load_object(b64url.decode(part), f"the JWS {what}")
    except ValueError as exc:
        raise _bad(f"{what}: {exc}") from None


def _exact_members(obj: dict[str, Any], expected: frozenset[str], what: str) -> None:
    members = set(obj)
    if members != expected:
        missing, extra = sorted(expected - members), sorted(members - expected)
        detail = "; ".join(
            p
            for p in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unexpected {', '.join(m[:40] for m in extra[:5])}" if extra else "",
            )
            if p
        )
        # Unknown members (crit, jku, x5u, b64, ...) would change what the JWS means.
        raise _bad(f"{what} members: {detail}", hint=f"expected exactly {sorted(expected)}")


def _b64_member(obj: dict[str, Any], name: str) -> bytes:
    value = obj[name]
    if not isinstance(value, str):
        raise _bad(f"{name} must be base64url text, got {type(value).__name__}")
    try:
        return b64url.decode(value)
    except ValueError as exc:
        raise _bad(f"{name}: {exc}") from None


def _is_our_type(typ: object) -> bool:
    if not isinstance(typ, str):
        return False
    typ = typ.lower()
    # RFC 7515 §4.1.9: "application/" may be omitted; media types compare case-insensitively.
    return typ == JWS_TYPE or typ == "application/" + JWS_TYPE
