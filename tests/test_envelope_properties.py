"""Properties of the envelope: no single change to a signed message goes unnoticed."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.ed25519 import verify_strict
from mesh.envelope import (
    ANY_AUDIENCE,
    BadSignature,
    Envelope,
    EnvelopeError,
    MalformedMessage,
    StaticKeys,
    Verifier,
    parse_jws,
    sign_jws,
    sign_message,
)
from mesh.envelope._internal import b64url
from mesh.envelope.encoding import fields_from_binary, reference_signed_bytes, signed_bytes
from mesh.envelope.models import _from_binary_fast
from mesh.keys import IdentityKey

KEY = IdentityKey.from_seed(bytes(range(32)))
SENDER = str(KEY.did())
T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)

tokens = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40
)
payloads = st.binary(max_size=300)
nonces = st.binary(min_size=16, max_size=64)
ttls = st.integers(min_value=1, max_value=3600)


@st.composite
def envelopes(draw: st.DrawFn) -> Envelope:
    return sign_message(
        KEY,
        SENDER,
        draw(tokens),
        draw(payloads),
        draw(tokens),
        ttl=timedelta(seconds=draw(ttls)),
        now=T0,
        nonce=draw(nonces),
    )


def fresh_verifier() -> Verifier:
    return Verifier(StaticKeys.inception(KEY.public_key), audience=ANY_AUDIENCE, clock=T0.timestamp)


def refused(parse: object, data: object) -> bool:
    """True when parsing ``data`` or verifying the result raises an EnvelopeError."""
    try:
        envelope = parse(data)  # type: ignore[operator]
        fresh_verifier().verify(envelope)
    except EnvelopeError:
        return True
    return False


@settings(max_examples=150, deadline=None)
@given(envelopes())
def test_every_envelope_verifies_and_round_trips(envelope: Envelope) -> None:
    assert Envelope.from_bytes(envelope.to_bytes()) == envelope
    assert Envelope.from_json(envelope.to_json()) == envelope
    fresh_verifier().verify(envelope)


@settings(max_examples=150, deadline=None)
@given(envelopes(), st.data())
def test_flipping_any_byte_of_the_signed_bytes_breaks_the_signature(
    envelope: Envelope, data: st.DataObject
) -> None:
    signed = bytearray(envelope.signed_bytes)
    index = data.draw(st.integers(0, len(signed) - 1))
    signed[index] ^= data.draw(st.integers(1, 255))
    assert not verify_strict(KEY.public_key, bytes(signed), envelope.signature)


@settings(max_examples=150, deadline=None)
@given(envelopes(), st.data())
def test_flipping_any_byte_of_the_binary_form_is_refused(
    envelope: Envelope, data: st.DataObject
) -> None:
    wire = bytearray(envelope.to_bytes())
    index = data.draw(st.integers(0, len(wire) - 1))
    wire[index] ^= data.draw(st.integers(1, 255))
    assert refused(Envelope.from_bytes, bytes(wire))


@settings(max_examples=150, deadline=None)
@given(envelopes(), st.data())
def test_changing_any_character_of_the_json_form_is_refused(
    envelope: Envelope, data: st.DataObject
) -> None:
    wire = envelope.to_json()
    index = data.draw(st.integers(0, len(wire) - 1))
    replacement = data.draw(st.characters(max_codepoint=0x7F).filter(lambda c: c != wire[index]))
    assert refused(Envelope.from_json, wire[:index] + replacement + wire[index + 1 :])


FIELD_VALUES = {
    "payload_type": tokens,
    "audience": tokens,
    "issued_at": st.integers(0, int(T0.timestamp()) + 299),
    "expires_at": st.integers(int(T0.timestamp()) + 1, int(T0.timestamp()) + 3600),
    "nonce": nonces,
    "payload": payloads,
}


@settings(max_examples=150, deadline=None)
@given(envelopes(), st.sampled_from(sorted(FIELD_VALUES)), st.data())
def test_changing_any_field_breaks_the_signature(
    envelope: Envelope, name: str, data: st.DataObject
) -> None:
    value = data.draw(FIELD_VALUES[name].filter(lambda v: v != getattr(envelope, name)))
    if name == "issued_at" and value >= envelope.expires_at:
        value = envelope.expires_at - 1 if envelope.expires_at - 1 != envelope.issued_at else 0
    if name == "expires_at" and value <= envelope.issued_at:
        value = envelope.issued_at + 3601
    altered = dataclasses.replace(envelope, **{name: value})  # type: ignore[arg-type]
    try:
        fresh_verifier().verify(altered)
    except BadSignature:
        return
    raise AssertionError(f"changing {name} went unnoticed")


field_lists = st.tuples(
    tokens, tokens, tokens, tokens, st.integers(0, 2**32), st.integers(0, 2**32), nonces, payloads
)


@settings(max_examples=250, deadline=None)
@given(field_lists, field_lists)
def test_different_fields_never_share_signed_bytes(a: tuple[Any, ...], b: tuple[Any, ...]) -> None:
    if a != b:
        assert signed_bytes(*a) != signed_bytes(*b)


@settings(max_examples=150, deadline=None)
@given(field_lists, st.sampled_from([0, 1, 2, 6]), st.integers(1, 3))
def test_moving_bytes_between_adjacent_fields_changes_the_signed_bytes(
    fields: tuple[Any, ...], index: int, shift: int
) -> None:
    # The classic ambiguity of plain concatenation: ("ab", "c") vs ("a", "bc").
    values = list(fields)
    left, right = values[index], values[index + 1]
    moved = left[-shift:]
    values[index], values[index + 1] = left[: len(left) - len(moved)], moved + right
    assert values != list(fields) or not moved
    if moved:
        assert signed_bytes(*values) != signed_bytes(*fields)


@settings(max_examples=150, deadline=None)
@given(field_lists)
def test_the_unrolled_encoder_matches_the_generic_one(fields: tuple[Any, ...]) -> None:
    assert signed_bytes(*fields) == reference_signed_bytes(*fields)


def _reference_b64url_decode(text: str) -> bytes | None:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text) or len(text) % 4 == 1:
        return None
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != text:
        return None
    return raw


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="AQgw09azZ-_+/=. \n\u00e9", max_size=12))
def test_base64url_accepts_exactly_the_canonical_spelling(text: str) -> None:
    try:
        decoded: bytes | None = b64url.decode(text)
    except ValueError:
        decoded = None
    assert decoded == _reference_b64url_decode(text)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=100))
def test_base64url_round_trips(data: bytes) -> None:
    assert b64url.decode(b64url.encode(data)) == data
    assert b64url.encode(data) == base64.urlsafe_b64encode(data).rstrip(b"=").decode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
ENVELOPE_MEMBERS = [
    "format", "payload_type", "sender", "kid", "audience",
    "issued_at", "expires_at", "nonce", "payload", "signature",
]  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(envelopes(), st.sampled_from(ENVELOPE_MEMBERS), json_values)
def test_any_json_value_in_any_member_is_refused_by_name(
    envelope: Envelope, member: str, value: object
) -> None:
    document = json.loads(envelope.to_json())
    if document[member] == value:
        return
    document[member] = value
    assert refused(Envelope.from_json, json.dumps(document))


JWS_PARTS = {
    "header": ["alg", "kid", "typ"],
    "claims": ["iss", "aud", "iat", "exp", "jti", "pty", "payload"],
}


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([(p, m) for p, ms in JWS_PARTS.items() for m in ms]), json_values)
def test_any_json_value_in_any_jws_member_is_refused_by_name(
    where: tuple[str, str], value: object
) -> None:
    part, member = where
    compact = sign_jws(KEY, SENDER, "t", b"x", "aud", now=T0)
    pieces = compact.split(".")
    index = 0 if part == "header" else 1
    document = json.loads(b64url.decode(pieces[index]))
    if document[member] == value:
        return
    document[member] = value
    pieces[index] = b64url.encode(json.dumps(document).encode())
    assert refused(parse_jws, ".".join(pieces))


@settings(max_examples=250, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=400))
def test_arbitrary_input_never_crashes_a_parser(data: bytes | str) -> None:
    for parse in (Envelope.from_json, Envelope.from_bytes, parse_jws):
        try:
            parse(data)  # type: ignore[operator]
        except EnvelopeError:
            pass


# --- the fast binary reader and the reference reader accept the same bytes --------------


def _reference_from_bytes(data: bytes) -> Envelope | MalformedMessage:
    """The field-by-field reader and the constructor's checks (what the fast path skips)."""
    try:
        return Envelope(**fields_from_binary(data))
    except MalformedMessage as exc:
        return exc


def assert_same_reading(data: bytes) -> None:
    """``Envelope.from_bytes`` reads ``data`` exactly as the reference reader does."""
    expected = _reference_from_bytes(data)
    fast = _from_binary_fast(data)
    if isinstance(expected, MalformedMessage):
        assert fast is None
        try:
            Envelope.from_bytes(data)
        except MalformedMessage as exc:
            assert (str(exc), exc.hint) == (str(expected), expected.hint)
        else:
            raise AssertionError("from_bytes accepted what the reference refuses")
        return
    assert fast is not None
    assert fast == expected
    assert [type(getattr(fast, f.name)) for f in dataclasses.fields(Envelope)] == [
        type(getattr(expected, f.name)) for f in dataclasses.fields(Envelope)
    ]
    assert fast.signed_bytes == expected.signed_bytes
    assert fast.to_bytes() == data
    assert Envelope.from_bytes(data) == expected


def _field(raw: bytes) -> bytes:
    return len(raw).to_bytes(8, "big") + raw


# Bytes near every edge of the alphabets: space, DEL, non-ASCII, base64 and base58 outcasts.
_edge_bytes = st.binary(max_size=48) | st.lists(
    st.sampled_from(b" !~\x7f\x80\xff\x00=+/-_0OIl:aZ9"), max_size=48
).map(bytes)


@st.composite
def binary_forms(draw: st.DrawFn) -> bytes:
    """Well-framed binary forms with one or two fields at an edge of their rule, or anything."""
    envelope = draw(envelopes())
    valid = [
        b"trustmesh/envelope/v1",
        envelope.payload_type.encode(),
        envelope.sender.encode(),
        envelope.kid.encode(),
        envelope.audience.encode(),
        envelope.issued_at.to_bytes(8, "big"),
        envelope.expires_at.to_bytes(8, "big"),
        envelope.nonce,
        envelope.payload,
        envelope.signature,
    ]

    def text(good: bytes, limit: int) -> st.SearchStrategy[bytes]:
        return (
            _edge_bytes
            | st.integers(1, 3).map(lambda n: good[: max(0, len(good) - n)])
            | st.sampled_from([b"x" * limit, b"x" * (limit + 1), good + b" ", b"", good[:-1]])
            | st.tuples(st.integers(0, max(0, len(good) - 1)), _edge_bytes).map(
                lambda at: good[: at[0]] + at[1][:1] + good[at[0] + 1 :]
            )
        )

    def time(value: int) -> st.SearchStrategy[bytes]:
        return (
            st.integers(0, 2**64 - 1).map(lambda v: v.to_bytes(8, "big"))
            | st.sampled_from([253402300799, 253402300800, 0, value - 1, value, value + 1]).map(
                lambda v: max(0, v).to_bytes(8, "big")
            )
            | st.binary(max_size=12)
        )

    sizes = st.sampled_from([0, 15, 16, 63, 64, 65]).map(bytes)
    damage = [
        _edge_bytes | st.just(b"trustmesh/envelope/v2"),
        text(valid[1], 128),
        text(valid[2], 37),
        text(valid[3], 43),
        text(valid[4], 256),
        time(envelope.issued_at),
        time(envelope.expires_at),
        sizes,
        st.binary(max_size=40),
        sizes,
    ]
    for index in draw(st.sets(st.integers(0, 9), max_size=2)):
        valid[index] = draw(damage[index])
    return b"".join(_field(f) for f in valid)


@settings(max_examples=600, deadline=None)
@given(binary_forms())
def test_the_fast_binary_reader_reads_every_field_as_the_reference_does(data: bytes) -> None:
    assert_same_reading(data)


@settings(max_examples=300, deadline=None)
@given(envelopes(), st.data())
def test_the_fast_binary_reader_refuses_damaged_framing_as_the_reference_does(
    envelope: Envelope, data: st.DataObject
) -> None:
    wire = envelope.to_bytes()
    assert_same_reading(wire)
    at = data.draw(st.integers(0, len(wire)))
    damaged = data.draw(
        st.sampled_from(
            [
                wire[:at],  # truncated
                wire[:at] + data.draw(st.binary(min_size=1, max_size=9)) + wire[at:],  # inserted
                wire[:at] + wire[at + 1 :],  # one byte gone
                wire + data.draw(st.binary(min_size=1, max_size=9)),  # trailing
            ]
        )
    )
    assert_same_reading(damaged)
    # A length prefix set to any value: shorter, longer, past the end, 2**64 - 1.
    offsets, offset = [], 0
    while offset < len(wire):
        offsets.append(offset)
        offset += 8 + int.from_bytes(wire[offset : offset + 8], "big")
    prefix = data.draw(st.sampled_from(offsets))
    length = data.draw(st.integers(0, 2**64 - 1) | st.integers(0, len(wire) + 8))
    assert_same_reading(wire[:prefix] + length.to_bytes(8, "big") + wire[prefix + 8 :])


def _fields_of(envelope: Envelope) -> list[bytes]:
    wire, fields, offset = envelope.to_bytes(), [], 0
    while offset < len(wire):
        length = int.from_bytes(wire[offset : offset + 8], "big")
        fields.append(wire[offset + 8 : offset + 8 + length])
        offset += 8 + length
    return fields


_T = int(T0.timestamp())
# (field index, value) on both sides of every limit the fast reader checks.
_EDGES = [
    *((1, v) for v in (b"", b"t", b"t" * 128, b"t" * 129, b"a b", b"a\x7f", b"a\x80", b"!~")),
    *((2, v) for v in (b"did:mesh:", b"did:mesh:1", b"did:mesh:" + b"1" * 28,
                       b"did:mesh:" + b"1" * 29, b"did:mesh:0", b"did:mesh:l", b"did:mesh:I",
                       b"did:mesh:O", b"did:mesh:1 ", b"did:mesh:\xe9", b"did:mash:1",
                       b"did:mesh:" + b"z" * 28)),
    *((3, v) for v in (b"A" * 43, b"A" * 42, b"A" * 44, b"A" * 42 + b"=", b"A" * 42 + b"+",
                       b"A" * 42 + b"/", b"-" * 43, b"_" * 43, b"A" * 42 + b"\x80")),
    *((4, v) for v in (b"", b"a", b"a" * 256, b"a" * 257, b"a ", b"\x00", b"~")),
    *((5, v.to_bytes(8, "big")) for v in (0, _T + 299, _T + 300, 253402300799, 2**64 - 1)),
    *((6, v.to_bytes(8, "big")) for v in (_T, _T + 1, 253402300799, 253402300800, 2**64 - 1)),
    *((5, v) for v in (b"", _T.to_bytes(7, "big"), _T.to_bytes(9, "big"))),
    *((6, v) for v in (b"", b"\x00" * 7)),
    *((7, bytes(n)) for n in (0, 15, 16, 64, 65)),
    *((8, v) for v in (b"", bytes(1 << 20), bytes((1 << 20) + 1))),
    *((9, bytes(n)) for n in (0, 63, 64, 65)),
    *((0, v) for v in (b"", b"trustmesh/envelope/v2", b"trustmesh/envelope/v1\x00")),
]


@pytest.mark.parametrize(("index", "value"), _EDGES)
def test_the_fast_binary_reader_at_each_limit(index: int, value: bytes) -> None:
    fields = _fields_of(sign_message(KEY, SENDER, "t", b"hi", "a", now=T0, nonce=bytes(16)))
    fields[index] = value
    assert_same_reading(b"".join(_field(f) for f in fields))


def test_the_fast_binary_reader_at_the_limits() -> None:
    envelope = sign_message(KEY, SENDER, "t", b"", "a", now=T0, nonce=bytes(16))
    assert_same_reading(envelope.to_bytes())
    big = sign_message(KEY, SENDER, "t" * 128, bytes(1 << 20), "a" * 256, now=T0, nonce=bytes(64))
    assert_same_reading(big.to_bytes())
    assert_same_reading(big.to_bytes() + b"\x00")
    for data in (b"", bytearray(envelope.to_bytes()), memoryview(envelope.to_bytes())):
        assert _from_binary_fast(data) is None  # type: ignore[arg-type]
        with pytest.raises(MalformedMessage):
            Envelope.from_bytes(data)  # type: ignore[arg-type]
