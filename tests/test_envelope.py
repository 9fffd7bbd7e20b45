"""The signed-message envelope: signing, wire forms, and every rule of the verifier."""

from __future__ import annotations

import dataclasses
import json
import struct
from datetime import UTC, datetime, timedelta

import pytest

from mesh.did import DID
from mesh.envelope import (
    ANY_AUDIENCE,
    BadSignature,
    Envelope,
    EnvelopeError,
    Expired,
    KeyMismatch,
    LifetimeTooLong,
    MalformedMessage,
    NotYetValid,
    Replayed,
    StaticKeys,
    UnknownKey,
    Verifier,
    WrongAudience,
    sign_message,
)
from mesh.envelope._internal import b64url
from mesh.errors import InvalidIdentifier, MeshError, WeakKeyError
from mesh.keys import IdentityKey
from mesh.replay import MemoryReplayGuard, ReplayGuardFull

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
BOB = "spiffe://example.org/agent/bob"
CAROL = "spiffe://example.org/agent/carol"
ALICE_KEY = IdentityKey.from_seed(bytes(range(32)))
ALICE = str(ALICE_KEY.did())
MALLORY_KEY = IdentityKey.from_seed(bytes(range(1, 33)))
NONCE = bytes(range(16))


class Clock:
    def __init__(self, at: datetime = T0) -> None:
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now


def verifier(clock: Clock | None = None, **kwargs: object) -> Verifier:
    kwargs.setdefault("audience", BOB)
    return Verifier(
        StaticKeys.inception(ALICE_KEY.public_key),
        clock=clock or Clock(),
        **kwargs,  # type: ignore[arg-type]
    )


def message(**kwargs: object) -> Envelope:
    args: dict[str, object] = {
        "key": ALICE_KEY,
        "sender": ALICE,
        "payload_type": "application/json",
        "payload": b'{"task":"summarise"}',
        "audience": BOB,
        "now": T0,
    }
    args.update(kwargs)
    return sign_message(**args)  # type: ignore[arg-type]


def resign(envelope: Envelope, key: IdentityKey = ALICE_KEY, **changes: object) -> Envelope:
    changed = dataclasses.replace(envelope, **changes)  # type: ignore[arg-type]
    return dataclasses.replace(changed, signature=key.sign(changed.signed_bytes))


# --- signing and the happy path -------------------------------------------------------------


def test_sign_then_verify_returns_the_message() -> None:
    envelope = message()
    verified = verifier().verify(envelope)
    assert verified.sender == ALICE
    assert verified.kid == ALICE_KEY.kid
    assert verified.payload_type == "application/json"
    assert verified.payload == b'{"task":"summarise"}'
    assert verified.audience == BOB
    assert verified.issued == T0
    assert verified.expires == T0 + timedelta(minutes=5)
    assert verified.form == "envelope"
    assert len(verified.nonce) == 16


def test_sign_accepts_a_did_object_and_fresh_nonces_differ() -> None:
    first = message(sender=ALICE_KEY.did())
    second = message(sender=ALICE_KEY.did())
    assert first.sender == ALICE
    assert first.nonce != second.nonce
    assert first.signature != second.signature


def test_times_are_whole_seconds() -> None:
    envelope = message(now=T0 + timedelta(milliseconds=999), ttl=timedelta(seconds=30))
    assert envelope.issued_at == int(T0.timestamp())
    assert envelope.expires_at == envelope.issued_at + 30


def test_signed_bytes_are_the_documented_layout() -> None:
    envelope = message(nonce=NONCE, payload=b"hi")

    def field(raw: bytes) -> bytes:
        return struct.pack(">Q", len(raw)) + raw

    iat = int(T0.timestamp())
    expected = b"".join(
        [
            field(b"trustmesh/envelope/v1"),
            field(b"application/json"),
            field(ALICE.encode()),
            field(ALICE_KEY.kid.encode()),
            field(BOB.encode()),
            field(struct.pack(">Q", iat)),
            field(struct.pack(">Q", iat + 300)),
            field(NONCE),
            field(b"hi"),
        ]
    )
    assert envelope.signed_bytes == expected
    assert envelope.to_bytes() == expected + field(envelope.signature)
    # Ed25519 is deterministic: the same fields and key give the same signature.
    assert envelope.signature == ALICE_KEY.sign(expected)


def test_published_vector() -> None:
    """The test vector in docs/messages.md."""
    envelope = message(
        payload_type="text/plain",
        payload=b"hi",
        nonce=NONCE,
        now=datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC),
    )
    assert ALICE_KEY.public_key.hex() == (
        "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    )
    assert ALICE == "did:mesh:2CiZ88hVF4JuQim8nnSuyeiV2HF2"
    assert ALICE_KEY.kid == "1IG2tMH7J2wbJZnOf8LJzQitKf7LMvoAElsuDMVM54Y"
    assert (envelope.issued_at, envelope.expires_at) == (1795521600, 1795521900)
    assert len(envelope.signed_bytes) == 247
    assert envelope.signature.hex() == (
        "3aa116ed0bee677fb258047964c71239037944b1671e4b4e40a49d0ed7acd763"
        "ce7fb0798ab378f230efb0ee8e88e946da9b1caf944ee3cdaa4e474cbcc34e0d"
    )
    assert json.loads(envelope.to_json())["signature"] == (
        "OqEW7QvuZ3-yWAR5ZMcSOQN5RLFnHktOQKSdDtes12POf7B5irN48jDvsO6OiOlG2pscr5RO482qTkdMvMNODQ"
    )


def test_json_and_binary_forms_round_trip() -> None:
    envelope = message()
    assert Envelope.from_json(envelope.to_json()) == envelope
    assert Envelope.from_json(envelope.to_json().encode()) == envelope
    assert Envelope.from_bytes(envelope.to_bytes()) == envelope
    wire = json.loads(envelope.to_json())
    assert wire["format"] == "trustmesh/envelope/v1"
    assert wire["issued_at"] == envelope.issued_at
    assert b64url.decode(wire["payload"]) == envelope.payload
    verifier().verify(Envelope.from_json(envelope.to_json()))


def test_sign_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="ttl"):
        message(ttl=timedelta(0))
    with pytest.raises(ValueError, match="ttl"):
        message(ttl=timedelta(seconds=1.5))
    with pytest.raises(ValueError, match="timezone-aware"):
        message(now=datetime(2026, 1, 1))
    with pytest.raises(MalformedMessage, match="audience"):
        message(audience="two words")
    with pytest.raises(MalformedMessage, match="nonce"):
        message(nonce=bytes(15))
    with pytest.raises(MalformedMessage, match="sender"):
        message(sender="did:web:example.org")


# --- rule 2: key ----------------------------------------------------------------------------


def test_unknown_sender_is_refused() -> None:
    envelope = sign_message(MALLORY_KEY, MALLORY_KEY.did(), "t", b"x", BOB, now=T0)
    with pytest.raises(UnknownKey, match="no keys are trusted"):
        verifier().verify(envelope)


def test_key_not_trusted_for_the_claimed_sender_is_refused() -> None:
    # Mallory signs in Alice's name with her own key: its kid is not one of Alice's.
    envelope = message(key=MALLORY_KEY)
    with pytest.raises(UnknownKey, match="no trusted key with kid"):
        verifier().verify(envelope)


def test_a_rotated_key_can_be_trusted_for_a_did_explicitly() -> None:
    rotated = IdentityKey.from_seed(bytes(range(2, 34)))
    keys = StaticKeys({ALICE: [ALICE_KEY.public_key, rotated.public_key]})
    check = Verifier(keys, audience=BOB, clock=Clock())
    assert check.verify(message(key=rotated)).kid == rotated.kid
    assert check.verify(message()).kid == ALICE_KEY.kid


# --- rule 3: signature ----------------------------------------------------------------------


def test_signature_by_another_key_under_alices_kid_is_refused() -> None:
    envelope = message()
    forged = dataclasses.replace(envelope, signature=MALLORY_KEY.sign(envelope.signed_bytes))
    with pytest.raises(BadSignature):
        verifier().verify(forged)


def test_payload_type_confusion_is_refused() -> None:
    envelope = message(payload_type="application/vnd.example.task+json")
    confused = dataclasses.replace(envelope, payload_type="application/vnd.example.approval+json")
    with pytest.raises(BadSignature):
        verifier().verify(confused)


def test_every_field_is_covered_by_the_signature() -> None:
    envelope = message()
    changes: dict[str, object] = {
        "payload_type": "text/plain",
        "audience": CAROL,
        "issued_at": envelope.issued_at - 1,
        "expires_at": envelope.expires_at + 1,
        "nonce": bytes(16),
        "payload": envelope.payload + b" ",
    }
    for name, value in changes.items():
        altered = dataclasses.replace(envelope, **{name: value})  # type: ignore[arg-type]
        with pytest.raises(BadSignature):
            verifier(audience=[BOB, CAROL]).verify(altered)


def test_non_canonical_signature_is_refused() -> None:
    # S + L verifies under a lax verifier; the strict policy refuses S >= L.
    order = 2**252 + 27742317777372353535851937790883648493
    envelope = message()
    r, s = envelope.signature[:32], int.from_bytes(envelope.signature[32:], "little")
    malleated = dataclasses.replace(envelope, signature=r + (s + order).to_bytes(32, "little"))
    with pytest.raises(BadSignature):
        verifier().verify(malleated)


# --- rule 4: audience -----------------------------------------------------------------------


def test_message_for_carol_is_refused_by_bob() -> None:
    envelope = message(audience=CAROL)
    with pytest.raises(WrongAudience, match="carol"):
        verifier().verify(envelope)
    assert verifier(audience=[BOB, CAROL]).verify(envelope).audience == CAROL
    assert verifier(audience=ANY_AUDIENCE).verify(envelope).audience == CAROL


def test_verifier_needs_an_audience() -> None:
    with pytest.raises(ValueError, match="audience"):
        verifier(audience=[])


# --- rule 5: time ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "error"),
    [
        (-61, NotYetValid),  # more than the 60 s skew before issued-at
        (-60, None),
        (0, None),
        (299, None),
        (300 + 59, None),  # past expiry, within skew
        (300 + 60, Expired),  # expiry + skew is exclusive
        (86400, Expired),
    ],
)
def test_time_window_edges(offset: int, error: type[EnvelopeError] | None) -> None:
    envelope = message()  # issued at T0, expires at T0 + 300 s
    clock = Clock(T0 + timedelta(seconds=offset))
    if error is None:
        verifier(clock).verify(envelope)
    else:
        with pytest.raises(error):
            verifier(clock).verify(envelope)


def test_now_argument_overrides_the_clock_for_the_time_rule() -> None:
    envelope = message()
    with pytest.raises(Expired):
        verifier().verify(envelope, now=T0 + timedelta(hours=1))
    with pytest.raises(ValueError, match="timezone-aware"):
        verifier().verify(envelope, now=datetime(2026, 11, 24, 12))


def test_skew_is_configurable() -> None:
    envelope = message()
    clock = Clock(T0 - timedelta(seconds=5))
    with pytest.raises(NotYetValid):
        verifier(clock, max_skew=timedelta(0)).verify(envelope)
    verifier(clock, max_skew=timedelta(seconds=5)).verify(envelope)


def test_lifetime_longer_than_allowed_is_refused() -> None:
    verifier().verify(message(ttl=timedelta(hours=1)))
    with pytest.raises(LifetimeTooLong):
        verifier().verify(message(ttl=timedelta(hours=1, seconds=1)))
    with pytest.raises(LifetimeTooLong):
        verifier(max_lifetime=timedelta(minutes=1)).verify(message())


def test_verifier_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="max_skew"):
        verifier(max_skew=timedelta(seconds=-1))
    with pytest.raises(ValueError, match="max_lifetime"):
        verifier(max_lifetime=timedelta(0))


# --- rule 6: replay -------------------------------------------------------------------------


def test_second_delivery_is_a_replay() -> None:
    check = verifier()
    envelope = message()
    check.verify(envelope)
    with pytest.raises(Replayed):
        check.verify(envelope)
    with pytest.raises(Replayed):
        check.verify(Envelope.from_json(envelope.to_json()))


def test_a_new_message_reusing_a_nonce_is_a_replay() -> None:
    check = verifier()
    check.verify(message(nonce=NONCE, payload=b"one"))
    with pytest.raises(Replayed):
        check.verify(message(nonce=NONCE, payload=b"two"))
    # Nonces are per sender: another sender may use the same bytes.
    other = Verifier(StaticKeys.inception(MALLORY_KEY.public_key), audience=BOB, clock=Clock())
    other.verify(sign_message(MALLORY_KEY, MALLORY_KEY.did(), "t", b"x", BOB, now=T0, nonce=NONCE))


def test_a_refused_message_does_not_burn_its_nonce() -> None:
    check = verifier()
    good = message(nonce=NONCE)
    for bad in (
        dataclasses.replace(good, signature=MALLORY_KEY.sign(good.signed_bytes)),
        resign(good, audience=CAROL),
        resign(good, expires_at=good.issued_at + 7200),
    ):
        with pytest.raises(EnvelopeError):
            check.verify(bad)
    check.verify(good)


def test_nonce_is_forgotten_only_after_the_window_closes() -> None:
    clock = Clock()
    check = verifier(clock, replay=MemoryReplayGuard(clock=clock))
    envelope = message()
    check.verify(envelope)
    clock.now = envelope.expires_at + 59  # still acceptable by rule 5
    with pytest.raises(Replayed):
        check.verify(envelope)
    clock.now = envelope.expires_at + 60
    with pytest.raises(Expired):
        check.verify(envelope)


def test_a_full_replay_guard_refuses_new_messages() -> None:
    check = verifier(replay=MemoryReplayGuard(max_entries=1, clock=Clock()))
    check.verify(message())
    with pytest.raises(ReplayGuardFull) as info:
        check.verify(message())
    assert isinstance(info.value, MeshError)


# --- the order of the checklist -------------------------------------------------------------


def test_first_failing_rule_is_reported() -> None:
    late = Clock(T0 + timedelta(days=1))
    unknown = message(key=MALLORY_KEY, audience=CAROL)
    with pytest.raises(UnknownKey):
        verifier(late).verify(unknown)
    forged = dataclasses.replace(message(audience=CAROL), payload=b"changed")
    with pytest.raises(BadSignature):
        verifier(late).verify(forged)
    with pytest.raises(WrongAudience):
        verifier(late).verify(message(audience=CAROL))
    long_lived = message(ttl=timedelta(hours=2))
    with pytest.raises(LifetimeTooLong):
        verifier(late).verify(long_lived)


# --- rule 1: shape --------------------------------------------------------------------------


def test_verify_refuses_what_is_not_a_message() -> None:
    with pytest.raises(MalformedMessage):
        verifier().verify(message().to_json())  # type: ignore[arg-type]


def test_payload_above_the_verifiers_limit_is_refused() -> None:
    with pytest.raises(MalformedMessage, match="at most 10"):
        verifier(max_payload=10).verify(message(payload=bytes(11)))


def _wire(**changes: object) -> str:
    obj = json.loads(message(nonce=NONCE).to_json())
    for key, value in changes.items():
        if value is _DROP:
            del obj[key]
        else:
            obj[key] = value
    return json.dumps(obj)


_DROP = object()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"a": 1, "a": 2}', "duplicate"),
        ('{"issued_at": NaN}', "NaN"),
        (_wire(kid=_DROP), "missing kid"),
        (_wire(extra="unsigned"), "unknown extra"),
        (_wire(format="trustmesh/envelope/v2"), "format"),
        (_wire(issued_at=True), "boolean"),
        (_wire(issued_at=1.5e9), "integer"),
        (_wire(issued_at="1795000000"), "integer"),
        (_wire(issued_at=-1), "outside"),
        (_wire(expires_at=2**64), "outside"),
        (_wire(expires_at=int(T0.timestamp())), "later than"),
        (_wire(sender=42), "sender must be a string"),
        (_wire(sender="did:mesh:0OIl"), "not a did:mesh"),
        (_wire(kid="short"), "kid"),
        (_wire(audience=""), "audience"),
        (_wire(audience="x" * 257), "audience"),
        (_wire(payload_type="a\u00e9"), "ASCII"),
        (_wire(nonce=b64url.encode(bytes(15))), "nonce must be 16 to 64"),
        (_wire(nonce=b64url.encode(bytes(65))), "nonce"),
        (_wire(signature=b64url.encode(bytes(63))), "signature must be 64"),
        (_wire(payload="aGk="), "base64url"),  # padding
        (_wire(payload="aG+k"), "base64url"),  # standard alphabet
        (_wire(payload="aGl"), "non-canonical"),  # unused bits set
        (_wire(payload="a"), "length"),
        (_wire(payload=None), "base64url"),
    ],
)
def test_malformed_json_is_refused_by_name(text: str, match: str) -> None:
    with pytest.raises(MalformedMessage, match=match):
        Envelope.from_json(text)


def test_json_must_be_utf8_and_bounded() -> None:
    with pytest.raises(MalformedMessage, match="UTF-8"):
        Envelope.from_json(message().to_json().encode("utf-16"))
    with pytest.raises(MalformedMessage, match="limit"):
        Envelope.from_json(" " * 2_000_000)
    with pytest.raises(MalformedMessage):
        Envelope.from_json(12)  # type: ignore[arg-type]
    with pytest.raises(MalformedMessage):
        Envelope.from_json("[" * 100_000 + "]" * 100_000)


def test_malformed_binary_is_refused_by_name() -> None:
    data = message().to_bytes()
    cases = {
        data[:-1]: "truncated",
        data + b"\x00": "trailing",
        data[:7]: "truncated",
        b"": "truncated",
        b"\x00" * 8 + data[8 + 21 :]: "tag",
    }
    for raw, match in cases.items():
        with pytest.raises(MalformedMessage, match=match):
            Envelope.from_bytes(raw)
    with pytest.raises(MalformedMessage, match="claims"):
        Envelope.from_bytes(b"\xff" * 8 + data[8:])
    with pytest.raises(MalformedMessage, match="bytes"):
        Envelope.from_bytes(data.hex())  # type: ignore[arg-type]


def test_binary_integer_fields_are_eight_bytes_and_text_is_ascii() -> None:
    envelope = message()

    def field(raw: bytes) -> bytes:
        return struct.pack(">Q", len(raw)) + raw

    def binary(issued_at: bytes, payload_type: bytes) -> bytes:
        return b"".join(
            [
                field(b"trustmesh/envelope/v1"),
                field(payload_type),
                field(ALICE.encode()),
                field(ALICE_KEY.kid.encode()),
                field(BOB.encode()),
                field(issued_at),
                field(struct.pack(">Q", envelope.expires_at)),
                field(NONCE),
                field(b""),
                field(bytes(64)),
            ]
        )

    iat = envelope.issued_at
    assert Envelope.from_bytes(binary(struct.pack(">Q", iat), b"t")).payload_type == "t"
    with pytest.raises(MalformedMessage, match="issued_at must be 8 bytes"):
        Envelope.from_bytes(binary(struct.pack(">I", iat), b"t"))
    with pytest.raises(MalformedMessage, match="ASCII"):
        Envelope.from_bytes(binary(struct.pack(">Q", iat), b"\xe9"))


# --- static keys ----------------------------------------------------------------------------


def test_static_keys_check_what_they_are_given() -> None:
    with pytest.raises(KeyMismatch):
        StaticKeys({str(MALLORY_KEY.did()): [ALICE_KEY.public_key]}, inception=True)
    with pytest.raises(WeakKeyError):
        StaticKeys({ALICE: [bytes(32)]})
    with pytest.raises(WeakKeyError):
        StaticKeys({ALICE: [ALICE_KEY.public_key[:31]]})
    with pytest.raises(InvalidIdentifier):
        StaticKeys({"alice": [ALICE_KEY.public_key]})
    keys = StaticKeys.inception(ALICE_KEY.public_key, MALLORY_KEY.public_key)
    assert keys.resolve(ALICE, ALICE_KEY.kid, T0) == ALICE_KEY.public_key
    assert keys.resolve(str(MALLORY_KEY.did()), MALLORY_KEY.kid, T0) == MALLORY_KEY.public_key
    assert str(DID.from_public_key(ALICE_KEY.public_key)) == ALICE
