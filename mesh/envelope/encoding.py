"""The envelope's signed bytes and its two wire forms (JSON and compact binary).

Signed bytes (docs/messages.md gives them byte by byte) use the project's one
length-prefixed encoding, :func:`mesh._internal.encoding.length_prefixed`:
the domain tag ``trustmesh/envelope/v1`` and then, in this fixed order,
payload type, sender, kid, audience, issued-at, expires-at, nonce, payload —
each preceded by its length as an unsigned 64-bit big-endian integer; the two
times are themselves unsigned 64-bit big-endian integers. No two different
messages share signed bytes, and no other structure the project signs starts
with this tag.

The binary form is the signed bytes followed by the length-prefixed
signature, so a receiver can check a signature over a slice of what it read.
The JSON form carries the same fields, bytes as unpadded base64url.
"""

from __future__ import annotations

import struct
from typing import Any, TypedDict

from mesh._internal.encoding import length_prefixed
from mesh.envelope._internal import b64url, strict_json
from mesh.envelope.errors import MalformedMessage

TAG = b"trustmesh/envelope/v1"
FORMAT = TAG.decode("ascii")
"""The value of the ``format`` member of the JSON form."""

_U64 = struct.Struct(">Q")
_FIELD_COUNT = 9  # eight signed fields and the signature
# Generous bounds checked before any parsing work: a 1 MiB payload in base64url
# plus the other fields fits comfortably.
MAX_JSON_CHARS = (1 << 20) * 4 // 3 + 4096
MAX_BINARY_BYTES = (1 << 20) + 4096

_TEXT_MEMBERS = ("payload_type", "sender", "kid", "audience")
_TIME_MEMBERS = ("issued_at", "expires_at")
_BYTES_MEMBERS = ("nonce", "payload", "signature")
_MEMBERS = frozenset(("format", *_TEXT_MEMBERS, *_TIME_MEMBERS, *_BYTES_MEMBERS))


class EnvelopeFields(TypedDict):
    """The nine fields of an envelope, as keyword arguments for ``Envelope(...)``."""

    payload_type: str
    sender: str
    kid: str
    audience: str
    issued_at: int
    expires_at: int
    nonce: bytes
    payload: bytes
    signature: bytes


def _bad(detail: str, hint: str | None = None) -> MalformedMessage:
    return MalformedMessage(f"malformed message: {detail}", hint=hint)


_pack_u64 = _U64.pack
# Precomputed: the tag with its length, and the length prefix of the two 8-byte times.
_TAG_FIELD = _pack_u64(len(TAG)) + TAG
_TIME_PREFIX = _pack_u64(_U64.size)


def signed_bytes(
    payload_type: str,
    sender: str,
    kid: str,
    audience: str,
    issued_at: int,
    expires_at: int,
    nonce: bytes,
    payload: bytes,
) -> bytes:
    """The bytes an envelope's signature covers. Callers pass already-validated fields.

    Byte for byte ``length_prefixed(TAG, payload_type, sender, kid, audience,
    u64(issued_at), u64(expires_at), nonce, payload)``, unrolled because every
    decoded message computes it.
    """
    ptype, who, key_id, aud = (
        payload_type.encode("utf-8"),
        sender.encode("utf-8"),
        kid.encode("utf-8"),
        audience.encode("utf-8"),
    )
    return b"".join(
        (
            _TAG_FIELD,
            _pack_u64(len(ptype)),
            ptype,
            _pack_u64(len(who)),
            who,
            _pack_u64(len(key_id)),
            key_id,
            _pack_u64(len(aud)),
            aud,
            _TIME_PREFIX,
            _pack_u64(issued_at),
            _TIME_PREFIX,
            _pack_u64(expires_at),
            _pack_u64(len(nonce)),
            nonce,
            _pack_u64(len(payload)),
            payload,
        )
    )


def reference_signed_bytes(
    payload_type: str,
    sender: str,
    kid: str,
    audience: str,
    issued_at: int,
    expires_at: int,
    nonce: bytes,
    payload: bytes,
) -> bytes:
    """:func:`signed_bytes` through the project's generic encoder (kept as the reference)."""
    return length_prefixed(
        TAG,
        payload_type.encode("utf-8"),
        sender.encode("utf-8"),
        kid.encode("utf-8"),
        audience.encode("utf-8"),
        _pack_u64(issued_at),
        _pack_u64(expires_at),
        nonce,
        payload,
    )


# --- JSON form ------------------------------------------------------------------------------


def fields_to_json(fields: EnvelopeFields) -> str:
    return strict_json.dump_compact(
        {
            "format": FORMAT,
            "payload_type": fields["payload_type"],
            "sender": fields["sender"],
            "kid": fields["kid"],
            "audience": fields["audience"],
            "issued_at": fields["issued_at"],
            "expires_at": fields["expires_at"],
            "nonce": b64url.encode(fields["nonce"]),
            "payload": b64url.encode(fields["payload"]),
            "signature": b64url.encode(fields["signature"]),
        }
    )


def fields_from_json(data: str | bytes) -> EnvelopeFields:
    """Read the JSON form's members; sizes and alphabets are checked by ``Envelope``."""
    if not isinstance(data, str | bytes):
        raise _bad(f"expected JSON text, got {type(data).__name__}")
    if len(data) > MAX_JSON_CHARS:
        raise _bad(f"the JSON envelope is {len(data)} long; the limit is {MAX_JSON_CHARS}")
    try:
        obj = strict_json.load_object(data, "the envelope")
    except ValueError as exc:
        raise _bad(str(exc)) from None
    members = set(obj)
    if members != _MEMBERS:
        missing, extra = sorted(_MEMBERS - members), sorted(members - _MEMBERS)
        detail = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unknown {', '.join(m[:40] for m in extra[:5])}" if extra else "",
            )
            if part
        )
        # Unknown members are refused, not ignored: they would be unsigned text
        # travelling inside a signed message.
        raise _bad(f"envelope members: {detail}", hint=f"the members are {sorted(_MEMBERS)}")
    if obj["format"] != FORMAT:
        raise _bad(
            f"format is {str(obj['format'])[:60]!r}, expected {FORMAT!r}",
            hint="this verifier reads envelope format v1",
        )
    for name in _TEXT_MEMBERS:
        _expect(obj, name, str, "a string")
    for name in _TIME_MEMBERS:
        if isinstance(obj[name], bool):
            raise _bad(f"{name} must be an integer, got a boolean")
        _expect(obj, name, int, "an integer (Unix seconds)")
    decoded: dict[str, bytes] = {}
    for name in _BYTES_MEMBERS:
        _expect(obj, name, str, "unpadded base64url text")
        try:
            decoded[name] = b64url.decode(obj[name])
        except ValueError as exc:
            raise _bad(f"{name}: {exc}") from None
    return EnvelopeFields(
        payload_type=obj["payload_type"],
        sender=obj["sender"],
        kid=obj["kid"],
        audience=obj["audience"],
        issued_at=obj["issued_at"],
        expires_at=obj["expires_at"],
        nonce=decoded["nonce"],
        payload=decoded["payload"],
        signature=decoded["signature"],
    )


def _expect(obj: dict[str, Any], name: str, kind: type, what: str) -> None:
    if not isinstance(obj[name], kind):
        raise _bad(f"{name} must be {what}, got {type(obj[name]).__name__}")


# --- compact binary form --------------------------------------------------------------------


def fields_to_binary(signed: bytes, signature: bytes) -> bytes:
    return signed + _U64.pack(len(signature)) + signature


BinaryParts = tuple[bytes, bytes, bytes, bytes, int, int, bytes, bytes, bytes, bytes]
"""payload_type, sender, kid, audience (still bytes), issued_at, expires_at, nonce,
payload, signature, and the signed bytes (a slice of the input)."""

_unpack_u64 = _U64.unpack_from
_FIRST_FIELD = len(_TAG_FIELD)  # where payload_type's length prefix starts
# What unpack_from raises past the end, or for an offset beyond any buffer (a 2**64 length).
_PAST_THE_END = (struct.error, OverflowError)


def split_binary(data: object) -> BinaryParts | None:
    """The binary form's fields in one pass, or ``None`` if anything at all is off.

    The fast path of :func:`fields_from_binary` for what receivers mostly see:
    well-formed input. It accepts exactly what that function accepts (a
    differential test holds them together), and says nothing about what it
    refuses: on ``None`` the caller asks :func:`fields_from_binary`, which
    names the first broken rule. The signed bytes are the input up to the
    signature's length prefix: every accepted field re-encodes to the very
    bytes it was read from (ASCII text, 8-byte times, exact length prefixes),
    so nothing needs encoding again.
    """
    if (
        type(data) is not bytes
        or len(data) > MAX_BINARY_BYTES
        or not data.startswith(_TAG_FIELD)
    ):
        return None
    unpack = _unpack_u64
    # Offsets only grow (lengths are unsigned), so a length running past the end
    # makes the next unpack_from raise, or the final length check fail. Slices
    # past the end are merely short; they are never returned then.
    try:
        start = _FIRST_FIELD + 8
        end = start + unpack(data, _FIRST_FIELD)[0]
        payload_type = data[start:end]
        start = end + 8
        end = start + unpack(data, end)[0]
        sender = data[start:end]
        start = end + 8
        end = start + unpack(data, end)[0]
        kid = data[start:end]
        start = end + 8
        end = start + unpack(data, end)[0]
        audience = data[start:end]
        if data[end : end + 8] != _TIME_PREFIX or data[end + 16 : end + 24] != _TIME_PREFIX:
            return None
        issued_at = unpack(data, end + 8)[0]
        expires_at = unpack(data, end + 24)[0]
        start = end + 40
        end = start + unpack(data, end + 32)[0]
        nonce = data[start:end]
        start = end + 8
        end = start + unpack(data, end)[0]
        payload = data[start:end]
        signed_end = end
        start = end + 8
        end = start + unpack(data, end)[0]
    except _PAST_THE_END:
        return None
    if end != len(data):
        return None
    return (
        payload_type,
        sender,
        kid,
        audience,
        issued_at,
        expires_at,
        nonce,
        payload,
        data[start:end],
        data[:signed_end],
    )


def fields_from_binary(data: bytes) -> EnvelopeFields:
    """Split the binary form into fields; refuse a wrong tag, bad lengths or trailing bytes.

    The reference reader, field by field, with a message for each broken rule;
    :func:`split_binary` is its fast path.
    """
    if not isinstance(data, bytes):
        raise _bad(f"expected bytes, got {type(data).__name__}")
    if len(data) > MAX_BINARY_BYTES:
        raise _bad(f"the binary envelope is {len(data)} bytes; the limit is {MAX_BINARY_BYTES}")
    parts: list[bytes] = []
    offset = 0
    for index in range(1 + _FIELD_COUNT):
        if len(data) - offset < _U64.size:
            raise _bad(f"truncated: field {index} has no complete length prefix")
        (length,) = _U64.unpack_from(data, offset)
        offset += _U64.size
        if length > len(data) - offset:
            raise _bad(f"truncated: field {index} claims {length} bytes, {len(data) - offset} left")
        parts.append(data[offset : offset + length])
        offset += length
    if offset != len(data):
        raise _bad(f"{len(data) - offset} trailing bytes after the signature")
    tag, ptype, sender, kid, audience, iat, exp, nonce, payload, signature = parts
    if tag != TAG:
        raise _bad("the binary form does not start with the trustmesh/envelope/v1 tag")
    for name, raw in (("issued_at", iat), ("expires_at", exp)):
        if len(raw) != _U64.size:
            raise _bad(f"{name} must be {_U64.size} bytes, got {len(raw)}")
    try:
        texts = [raw.decode("ascii") for raw in (ptype, sender, kid, audience)]
    except UnicodeDecodeError:
        raise _bad("a text field is not ASCII") from None
    return EnvelopeFields(
        payload_type=texts[0],
        sender=texts[1],
        kid=texts[2],
        audience=texts[3],
        issued_at=_U64.unpack(iat)[0],
        expires_at=_U64.unpack(exp)[0],
        nonce=nonce,
        payload=payload,
        signature=signature,
    )
