"""The JWS Compact form: the same checklist, and interoperability with joserfc both ways."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime, timedelta

import pytest
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import OKPKey

from mesh.envelope import (
    BadSignature,
    Expired,
    KeyMismatch,
    MalformedMessage,
    Replayed,
    StaticKeys,
    UnknownKey,
    Verifier,
    WrongAudience,
    parse_jws,
    sign_jws,
    sign_message,
    to_jws,
    verify_jws,
)
from mesh.envelope._internal import b64url
from mesh.keys import IdentityKey

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
BOB = "spiffe://example.org/agent/bob"
ALICE_KEY = IdentityKey.from_seed(bytes(range(32)))
ALICE = str(ALICE_KEY.did())
MALLORY_KEY = IdentityKey.from_seed(bytes(range(1, 33)))
NONCE = bytes(range(16))


def verifier(at: datetime = T0) -> Verifier:
    return Verifier(StaticKeys.inception(ALICE_KEY.public_key), audience=BOB, clock=at.timestamp)


def token(**kwargs: object) -> str:
    args: dict[str, object] = {
        "key": ALICE_KEY,
        "sender": ALICE,
        "payload_type": "application/json",
        "payload": b'{"task":"summarise"}',
        "audience": BOB,
        "now": T0,
    }
    args.update(kwargs)
    return sign_jws(**args)  # type: ignore[arg-type]


def public_jwk(key: IdentityKey) -> OKPKey:
    return OKPKey.import_key({"kty": "OKP", "crv": "Ed25519", "x": b64url.encode(key.public_key)})


def private_jwk(key: IdentityKey) -> OKPKey:
    return OKPKey.import_key(
        {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64url.encode(key.public_key),
            "d": b64url.encode(key.seed()),
        }
    )


def claims(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "iss": ALICE,
        "aud": BOB,
        "iat": int(T0.timestamp()),
        "exp": int(T0.timestamp()) + 300,
        "jti": b64url.encode(NONCE),
        "pty": "application/json",
        "payload": b64url.encode(b"hello"),
    }
    base.update(changes)
    return base


def handmade(header: object, body: object, key: IdentityKey = ALICE_KEY) -> str:
    """A JWS signed correctly over arbitrary header and claims (for shape tests)."""
    head = b64url.encode(json.dumps(header).encode())
    payload = b64url.encode(json.dumps(body).encode())
    signing_input = f"{head}.{payload}"
    return f"{signing_input}.{b64url.encode(key.sign(signing_input.encode()))}"


HEADER = {"alg": "EdDSA", "kid": ALICE_KEY.kid, "typ": "trustmesh-message+jwt"}


# --- our checklist over the JWS form --------------------------------------------------------


def test_sign_then_verify() -> None:
    verified = verify_jws(token(), verifier())
    assert verified.form == "jws"
    assert verified.sender == ALICE
    assert verified.payload_type == "application/json"
    assert verified.payload == b'{"task":"summarise"}'
    assert verified.issued == T0
    assert verified.expires == T0 + timedelta(minutes=5)


def test_both_algorithm_names_are_accepted() -> None:
    for alg in ("EdDSA", "Ed25519"):
        compact = token(alg=alg)
        assert parse_jws(compact).alg == alg
        verify_jws(compact, verifier())
    with pytest.raises(ValueError):
        token(alg="ES256")


def test_envelope_and_jws_are_the_same_message() -> None:
    envelope = sign_message(ALICE_KEY, ALICE, "t", b"x", BOB, now=T0, nonce=NONCE)
    compact = to_jws(envelope, ALICE_KEY)
    check = verifier()
    from_jws = verify_jws(compact, check)
    # One message, two forms: whichever arrives second is a replay.
    with pytest.raises(Replayed):
        check.verify(envelope)
    assert from_jws._replace(form="envelope") == verifier().verify(envelope)
    with pytest.raises(KeyMismatch):
        to_jws(envelope, MALLORY_KEY)


def test_replay_audience_time_and_key_rules_apply() -> None:
    check = verifier()
    compact = token()
    verify_jws(compact, check)
    with pytest.raises(Replayed):
        verify_jws(compact, check)
    with pytest.raises(WrongAudience):
        verify_jws(token(audience="spiffe://example.org/agent/carol"), verifier())
    with pytest.raises(Expired):
        verify_jws(token(), verifier(T0 + timedelta(minutes=6)))
    with pytest.raises(UnknownKey):
        verify_jws(token(key=MALLORY_KEY), verifier())


def test_changed_claims_or_header_break_the_signature() -> None:
    head, body, sig = token(nonce=NONCE).split(".")
    other_body = b64url.encode(json.dumps(claims(aud=BOB, payload=b64url.encode(b"evil"))).encode())
    with pytest.raises(BadSignature):
        verify_jws(f"{head}.{other_body}.{sig}", verifier())
    # Switching EdDSA for Ed25519 changes the signed header.
    other_head = b64url.encode(json.dumps({**HEADER, "alg": "Ed25519"}).encode())
    with pytest.raises(BadSignature):
        verify_jws(f"{other_head}.{body}.{sig}", verifier())


def test_malleated_signature_is_refused() -> None:
    order = 2**252 + 27742317777372353535851937790883648493
    head, body, sig = token().split(".")
    raw = b64url.decode(sig)
    s = int.from_bytes(raw[32:], "little") + order
    malleated = b64url.encode(raw[:32] + s.to_bytes(32, "little"))
    with pytest.raises(BadSignature):
        verify_jws(f"{head}.{body}.{malleated}", verifier())


@pytest.mark.parametrize(
    ("compact", "match"),
    [
        ("a.b", "3 dot-separated parts"),
        ("a.b.c.d.e", "3 dot-separated parts"),
        ("!!.e30.AA", "protected header"),
        (f"{b64url.encode(b'[1]')}.e30.AA", "JSON object"),
        (f"{b64url.encode(b'{}')}.e30.AA", "missing alg, kid, typ"),
        (handmade({**HEADER, "crit": ["exp"]}, claims()), "unexpected crit"),
        (handmade({**HEADER, "jwk": {"kty": "OKP"}}, claims()), "unexpected jwk"),
        (handmade({**HEADER, "alg": "none"}, claims()), "alg 'none'"),
        (handmade({**HEADER, "alg": "HS256"}, claims()), "alg 'HS256'"),
        (handmade({**HEADER, "typ": "JWT"}, claims()), "typ 'JWT'"),
        (handmade(HEADER, {**claims(), "sub": "x"}), "unexpected sub"),
        (handmade(HEADER, {k: v for k, v in claims().items() if k != "jti"}), "missing jti"),
        (handmade(HEADER, claims(aud=[BOB])), "aud must be a single string"),
        (handmade(HEADER, claims(iat=1.5)), "iat must be an integer"),
        (handmade(HEADER, claims(exp=True)), "exp must be an integer"),
        (handmade(HEADER, claims(jti=b64url.encode(bytes(8)))), "nonce"),
        (handmade(HEADER, claims(jti=7)), "jti must be base64url"),
        (handmade(HEADER, claims(payload="aGk=")), "payload"),
        (handmade(HEADER, claims(iss="did:web:example.org")), "sender"),
        (handmade({**HEADER, "kid": "abc"}, claims()), "kid"),
        (handmade(HEADER, claims(pty="")), "payload_type"),
        (handmade(HEADER, claims(exp=int(T0.timestamp()))), "later than"),
        (token().rsplit(".", 1)[0] + "." + b64url.encode(bytes(63)), "signature must be 64"),
        (token().rsplit(".", 1)[0] + ".AA=", "signature"),
        ("é.b.c", "ASCII"),
    ],
)
def test_malformed_jws_is_refused_by_name(compact: str, match: str) -> None:
    with pytest.raises(MalformedMessage, match=match):
        verify_jws(compact.encode("utf-8") if compact.startswith("é") else compact, verifier())


def test_duplicate_members_and_oversize_input_are_refused() -> None:
    head = b64url.encode(b'{"alg":"EdDSA","alg":"EdDSA","kid":"x","typ":"y"}')
    with pytest.raises(MalformedMessage, match="duplicate"):
        parse_jws(f"{head}.e30.AA")
    with pytest.raises(MalformedMessage, match="limit"):
        parse_jws("a" * 2_000_000)
    with pytest.raises(MalformedMessage):
        parse_jws(None)  # type: ignore[arg-type]


def test_typ_compares_case_insensitively_with_optional_application_prefix() -> None:
    for typ in ("application/trustmesh-message+jwt", "TrustMesh-Message+JWT"):
        verify_jws(handmade({**HEADER, "typ": typ}, claims()), verifier())


# --- interoperability with joserfc ----------------------------------------------------------


def test_our_kid_is_the_jwk_thumbprint_joserfc_computes() -> None:
    assert public_jwk(ALICE_KEY).thumbprint() == ALICE_KEY.kid


@pytest.mark.parametrize("alg", ["EdDSA", "Ed25519"])
def test_joserfc_verifies_our_jws(alg: str) -> None:
    compact = token(alg=alg, payload=b"\x00\xffbinary")
    with warnings.catch_warnings():
        # joserfc flags the RFC 8037 name as deprecated by RFC 9864; it still verifies it.
        warnings.simplefilter("ignore")
        decoded = jwt.decode(compact, public_jwk(ALICE_KEY), algorithms=[alg])
        with pytest.raises(BadSignatureError):
            jws.deserialize_compact(compact, public_jwk(MALLORY_KEY), algorithms=[alg])
    assert decoded.header == {"alg": alg, "kid": ALICE_KEY.kid, "typ": "trustmesh-message+jwt"}
    assert decoded.claims["iss"] == ALICE
    assert decoded.claims["aud"] == BOB
    assert decoded.claims["pty"] == "application/json"
    assert b64url.decode(decoded.claims["payload"]) == b"\x00\xffbinary"
    assert decoded.claims["exp"] - decoded.claims["iat"] == 300


@pytest.mark.parametrize("alg", ["Ed25519", "EdDSA"])
def test_we_verify_a_jws_joserfc_made(alg: str) -> None:
    header = {
        "alg": alg,
        "kid": private_jwk(ALICE_KEY).thumbprint(),
        "typ": "trustmesh-message+jwt",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compact = jwt.encode(header, claims(), private_jwk(ALICE_KEY), algorithms=[alg])
    verified = verify_jws(compact, verifier())
    assert verified.payload == b"hello"
    assert verified.nonce == NONCE
    assert verified.kid == ALICE_KEY.kid


def test_a_joserfc_jws_with_a_foreign_key_is_refused() -> None:
    header = {"alg": "Ed25519", "kid": ALICE_KEY.kid, "typ": "trustmesh-message+jwt"}
    compact = jwt.encode(header, claims(), private_jwk(MALLORY_KEY), algorithms=["Ed25519"])
    with pytest.raises(BadSignature):
        verify_jws(compact, verifier())
