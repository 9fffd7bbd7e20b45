"""The signed message, its JWS twin, and what a successful verification returns.

Times are whole seconds since the Unix epoch, UTC (``int``), exactly as JWT
``iat``/``exp`` NumericDates, so the envelope and its JWS form carry the same
values. An :class:`Envelope` is always well-formed: its constructor checks every
field (raising :class:`MalformedMessage`) and computes the signed bytes once, so
verification never re-encodes anything.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from mesh.envelope import encoding
from mesh.envelope.errors import MalformedMessage

NONCE_MIN_BYTES = 16
NONCE_MAX_BYTES = 64
SIGNATURE_BYTES = 64
MAX_PAYLOAD_BYTES = 1 << 20
MAX_PAYLOAD_TYPE_CHARS = 128
MAX_AUDIENCE_CHARS = 256
KID_CHARS = 43  # base64url of a SHA-256 JWK thumbprint (RFC 7638)
# 9999-12-31T23:59:59Z: every accepted time converts to a datetime without error.
MAX_TIME = 253402300799

_DID_PREFIX = "did:mesh:"
_DID_MAX_CHARS = len(_DID_PREFIX) + 28
_BASE58 = frozenset("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")
_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _bad(detail: str, hint: str | None = None) -> MalformedMessage:
    return MalformedMessage(f"malformed message: {detail}", hint=hint)


def _check_token(name: str, value: object, max_chars: int) -> None:
    """Printable ASCII without spaces: one spelling, nothing a log or header could mangle."""
    if not isinstance(value, str):
        raise _bad(f"{name} must be a string, got {type(value).__name__}")
    if not 0 < len(value) <= max_chars:
        raise _bad(f"{name} must have 1 to {max_chars} characters, got {len(value)}")
    if not (value.isascii() and value.isprintable()) or " " in value:
        raise _bad(f"{name} must be printable ASCII without spaces")


def _check_sender(value: object) -> None:
    # A cheap structural check: the key resolver binds the DID to its keys, and a
    # full DID.parse (base58 round trip) costs more than the rest of decoding.
    if not isinstance(value, str):
        raise _bad(f"sender must be a string, got {type(value).__name__}")
    if (
        not value.startswith(_DID_PREFIX)
        or not len(_DID_PREFIX) < len(value) <= _DID_MAX_CHARS
        or not _BASE58.issuperset(value[len(_DID_PREFIX) :])
    ):
        raise _bad(f"sender {value[:60]!r} is not a did:mesh DID", hint="did:mesh:<base58 id>")


def _check_kid(value: object) -> None:
    if not isinstance(value, str) or len(value) != KID_CHARS or not _B64URL.issuperset(value):
        raise _bad(
            "kid must be the 43-character RFC 7638 thumbprint of the sender's key",
            hint="use IdentityKey.kid or mesh.keys.key_id(public_key)",
        )


def _check_time(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{name} must be an integer number of seconds, got {type(value).__name__}")
    if not 0 <= value <= MAX_TIME:
        raise _bad(f"{name} {value} is outside 0..{MAX_TIME} (Unix seconds, UTC)")
    return value


def _check_bytes(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, bytes):
        raise _bad(f"{name} must be bytes, got {type(value).__name__}")
    if not low <= len(value) <= high:
        size = f"{low}" if low == high else f"{low} to {high}"
        raise _bad(f"{name} must be {size} bytes, got {len(value)}")


def check_fields(
    payload_type: object,
    sender: object,
    kid: object,
    audience: object,
    issued_at: object,
    expires_at: object,
    nonce: object,
    payload: object,
    signature: object,
) -> None:
    """Raise :class:`MalformedMessage` unless every field has its type, size and alphabet."""
    _check_token("payload_type", payload_type, MAX_PAYLOAD_TYPE_CHARS)
    _check_sender(sender)
    _check_kid(kid)
    _check_token("audience", audience, MAX_AUDIENCE_CHARS)
    iat = _check_time("issued_at", issued_at)
    exp = _check_time("expires_at", expires_at)
    if exp <= iat:
        raise _bad(f"expires_at ({exp}) must be later than issued_at ({iat})")
    _check_bytes("nonce", nonce, NONCE_MIN_BYTES, NONCE_MAX_BYTES)
    _check_bytes("payload", payload, 0, MAX_PAYLOAD_BYTES)
    _check_bytes("signature", signature, SIGNATURE_BYTES, SIGNATURE_BYTES)


@functools.lru_cache(maxsize=4096)
def utc(seconds: int) -> datetime:
    """Unix seconds as an aware UTC datetime.

    Cached: live traffic carries times from the last few minutes, and the
    verifier converts two of them per message.
    """
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One signed agent-to-agent message (see docs/messages.md).

    ``issued_at`` and ``expires_at`` are Unix seconds (UTC); the message is
    meant to be accepted while ``issued_at <= now < expires_at`` (give or take
    the verifier's clock skew).
    """

    payload_type: str
    sender: str
    kid: str
    audience: str
    issued_at: int
    expires_at: int
    nonce: bytes
    payload: bytes
    signature: bytes
    _signed: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_fields(
            self.payload_type,
            self.sender,
            self.kid,
            self.audience,
            self.issued_at,
            self.expires_at,
            self.nonce,
            self.payload,
            self.signature,
        )
        object.__setattr__(
            self,
            "_signed",
            encoding.signed_bytes(
                self.payload_type,
                self.sender,
                self.kid,
                self.audience,
                self.issued_at,
                self.expires_at,
                self.nonce,
                self.payload,
            ),
        )

    @property
    def signed_bytes(self) -> bytes:
        """The exact bytes the signature covers (computed once, at construction)."""
        return self._signed

    @property
    def issued(self) -> datetime:
        return utc(self.issued_at)

    @property
    def expires(self) -> datetime:
        return utc(self.expires_at)

    def to_json(self) -> str:
        """The JSON wire form (bytes as unpadded base64url)."""
        return encoding.fields_to_json(_fields(self))

    @classmethod
    def from_json(cls, data: str | bytes) -> Envelope:
        """Parse the JSON wire form; raise :class:`MalformedMessage` saying what is wrong."""
        return cls(**encoding.fields_from_json(data))

    def to_bytes(self) -> bytes:
        """The compact binary form: the signed bytes followed by the length-prefixed signature."""
        return encoding.fields_to_binary(self._signed, self.signature)

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        """Parse the compact binary form; raise :class:`MalformedMessage` saying what is wrong."""
        if cls is Envelope:
            envelope = _from_binary_fast(data)
            if envelope is not None:
                return envelope
        # Anything the fast path does not accept: the reference reader and the
        # constructor's checks, which name the first rule the input breaks.
        return cls(**encoding.fields_from_binary(data))


# The alphabets of check_fields as bytes, for bytes.translate(None, delete): what is
# left after deleting them is what is outside them.
_VISIBLE_ASCII = bytes(range(0x21, 0x7F))  # printable ASCII without the space
_BASE58_BYTES = "".join(sorted(_BASE58)).encode("ascii")
_B64URL_BYTES = "".join(sorted(_B64URL)).encode("ascii")
_DID_PREFIX_BYTES = _DID_PREFIX.encode("ascii")
_DID_ID_START = len(_DID_PREFIX)
_SIGNED_FIELDS = (
    "payload_type",
    "sender",
    "kid",
    "audience",
    "issued_at",
    "expires_at",
    "nonce",
    "payload",
)
_new_envelope = object.__new__
# The slots' own setters (what object.__setattr__ ends up calling, without the lookup).
(
    _set_payload_type,
    _set_sender,
    _set_kid,
    _set_audience,
    _set_issued_at,
    _set_expires_at,
    _set_nonce,
    _set_payload,
    _set_signature,
    _set_signed,
) = (
    Envelope.__dict__[name].__set__ for name in (*_SIGNED_FIELDS, "signature", "_signed")
)


def _from_binary_fast(data: bytes) -> Envelope | None:
    """The binary form read in one pass, every field rule checked on the raw bytes.

    Accepts exactly what ``Envelope(**fields_from_binary(data))`` accepts and
    builds the same envelope (tests/test_envelope_properties.py compares them
    on valid and damaged input); returns ``None`` for everything else, so the
    slow path can say what is wrong. The rules of :func:`check_fields`, on
    bytes: printable ASCII without spaces is 0x21..0x7E; the DID, kid and
    token alphabets are ASCII, so each text decodes as ASCII and its length in
    characters is its length in bytes; the times are unsigned, so only their
    upper bound and order need checking.
    """
    parts = encoding.split_binary(data)
    if parts is None:
        return None
    ptype, sender, kid, audience, issued_at, expires_at, nonce, payload, signature, signed = parts
    if not (
        0 < len(ptype) <= MAX_PAYLOAD_TYPE_CHARS
        and not ptype.translate(None, _VISIBLE_ASCII)
        and _DID_ID_START < len(sender) <= _DID_MAX_CHARS
        and sender.startswith(_DID_PREFIX_BYTES)
        and not sender[_DID_ID_START:].translate(None, _BASE58_BYTES)
        and len(kid) == KID_CHARS
        and not kid.translate(None, _B64URL_BYTES)
        and 0 < len(audience) <= MAX_AUDIENCE_CHARS
        and not audience.translate(None, _VISIBLE_ASCII)
        and issued_at < expires_at <= MAX_TIME
        and NONCE_MIN_BYTES <= len(nonce) <= NONCE_MAX_BYTES
        and len(payload) <= MAX_PAYLOAD_BYTES
        and len(signature) == SIGNATURE_BYTES
    ):
        return None
    envelope: Envelope = _new_envelope(Envelope)
    _set_payload_type(envelope, ptype.decode("ascii"))
    _set_sender(envelope, sender.decode("ascii"))
    _set_kid(envelope, kid.decode("ascii"))
    _set_audience(envelope, audience.decode("ascii"))
    _set_issued_at(envelope, issued_at)
    _set_expires_at(envelope, expires_at)
    _set_nonce(envelope, nonce)
    _set_payload(envelope, payload)
    _set_signature(envelope, signature)
    _set_signed(envelope, signed)
    return envelope


def with_signature(envelope: Envelope, signature: bytes) -> Envelope:
    """``envelope`` with ``signature``, reusing its signed bytes (they exclude the signature).

    The signing path builds the envelope once, signs its signed bytes, and
    attaches the signature here instead of validating and encoding it again.
    """
    _check_bytes("signature", signature, SIGNATURE_BYTES, SIGNATURE_BYTES)
    signed = object.__new__(Envelope)
    for name in _SIGNED_FIELDS:
        object.__setattr__(signed, name, getattr(envelope, name))
    object.__setattr__(signed, "signature", signature)
    object.__setattr__(signed, "_signed", envelope._signed)
    return signed


def _fields(envelope: Envelope) -> encoding.EnvelopeFields:
    return encoding.EnvelopeFields(
        payload_type=envelope.payload_type,
        sender=envelope.sender,
        kid=envelope.kid,
        audience=envelope.audience,
        issued_at=envelope.issued_at,
        expires_at=envelope.expires_at,
        nonce=envelope.nonce,
        payload=envelope.payload,
        signature=envelope.signature,
    )


@dataclass(frozen=True, slots=True)
class JwsMessage:
    """A parsed JWS Compact message: the envelope's fields, read from header and claims.

    Built by :func:`mesh.envelope.jws.parse_jws`; ``signed_bytes`` is the JWS
    signing input (``BASE64URL(header) || '.' || BASE64URL(claims)``).
    """

    payload_type: str
    sender: str
    kid: str
    audience: str
    issued_at: int
    expires_at: int
    nonce: bytes
    payload: bytes
    signature: bytes
    alg: str
    signed_bytes: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_fields(
            self.payload_type,
            self.sender,
            self.kid,
            self.audience,
            self.issued_at,
            self.expires_at,
            self.nonce,
            self.payload,
            self.signature,
        )
        if not isinstance(self.signed_bytes, bytes):
            raise _bad("the JWS signing input must be bytes")


class VerifiedMessage(NamedTuple):
    """A message that passed every check. Only a :class:`Verifier` makes these.

    Immutable (a named tuple, which is also the cheapest object to build on
    the verification path).
    """

    sender: str
    kid: str
    payload_type: str
    payload: bytes
    audience: str
    issued_at: int
    expires_at: int
    nonce: bytes
    form: str
    """``"envelope"`` or ``"jws"``: which wire form the message arrived in."""

    @property
    def issued(self) -> datetime:
        return utc(self.issued_at)

    @property
    def expires(self) -> datetime:
        return utc(self.expires_at)
