"""Properties of the envelope: no single change to a signed message goes unnoticed."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.ed25519 import verify_strict
from mesh.envelope import (
    ANY_AUDIENCE,
    BadSignature,
    Envelope,
    EnvelopeError,
    StaticKeys,
    Verifier,
    parse_jws,
    sign_jws,
    sign_message,
)
from mesh.envelope._internal import b64url
from mesh.envelope.encoding import reference_signed_bytes, signed_bytes
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
