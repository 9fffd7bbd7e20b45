"""JWT-SVID validation: good tokens for every allowed algorithm, one bad token per rule."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import warnings
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from mesh.bundle import Bundle
from mesh.spiffeid import SpiffeID, TrustDomain
from mesh.svid import (
    ALLOWED_ALGORITHMS,
    DEFAULT_LEEWAY,
    JWT_RULES,
    SVIDError,
    parse_and_validate_jwt_svid,
)

TD = TrustDomain("mesh.local")
SUB = "spiffe://mesh.local/agent/test"
AUD = "spiffe://mesh.local/service"

P256 = ec.generate_private_key(ec.SECP256R1())
P384 = ec.generate_private_key(ec.SECP384R1())
P521 = ec.generate_private_key(ec.SECP521R1())
RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KEYS: dict[str, Any] = {"p256": P256, "p384": P384, "p521": P521, "rsa": RSA}
BUNDLE = Bundle(TD, jwt_authorities={kid: key.public_key() for kid, key in KEYS.items()})
KID_FOR_ALG = {"ES256": "p256", "ES384": "p384", "ES512": "p521"}


def _claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"sub": SUB, "aud": [AUD], "exp": int(time.time()) + 300,
                              "iat": int(time.time())}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(alg: str = "ES256", kid: str | None = None, claims: dict[str, Any] | None = None,
          header: dict[str, Any] | None = None, key: Any = None) -> str:
    """A real token signed with joserfc."""
    kid = kid if kid is not None else KID_FOR_ALG.get(alg, "rsa")
    private = key if key is not None else KEYS[kid]
    jose_key = (ECKey if isinstance(private, ec.EllipticCurvePrivateKey) else RSAKey).import_key(
        private
    )
    hdr: dict[str, Any] = {"alg": alg, "kid": kid, "typ": "JWT"}
    hdr.update(header or {})
    hdr = {k: v for k, v in hdr.items() if v is not None}
    return jwt.encode(hdr, claims if claims is not None else _claims(), jose_key, algorithms=[alg])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _raw(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"sig") -> str:
    """A hand-made token, for shapes a JOSE library refuses to produce."""
    return ".".join(
        [_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(signature)]
    )


def _rule(token: Any, rule: str, fragment: str, bundle: Any = BUNDLE, audience: Any = AUD,
          **kwargs: Any) -> SVIDError:
    with pytest.raises(SVIDError) as info:
        parse_and_validate_jwt_svid(token, bundle, audience, **kwargs)
    assert info.value.rule == rule, str(info.value)
    assert fragment in str(info.value)
    return info.value


# --- valid tokens ------------------------------------------------------------------------------

@pytest.mark.parametrize("alg", sorted(ALLOWED_ALGORITHMS))
def test_every_allowed_algorithm(alg: str) -> None:
    svid = parse_and_validate_jwt_svid(_sign(alg), BUNDLE, AUD)
    assert svid.spiffe_id == SpiffeID.parse(SUB)
    assert svid.audience == (AUD,)
    assert svid.header["alg"] == alg


def test_result() -> None:
    exp = int(time.time()) + 120
    token = _sign(claims=_claims(exp=exp, aud=AUD, extra="value"))
    svid = parse_and_validate_jwt_svid(token, BUNDLE, AUD)
    assert svid.expiry == dt.datetime.fromtimestamp(exp, dt.UTC)
    assert svid.audience == (AUD,)  # a single string aud
    assert svid.claims["extra"] == "value"
    assert svid.kid == "p256"
    assert svid.marshal() == token
    assert token not in repr(svid)
    with pytest.raises(TypeError):
        svid.claims["sub"] = "x"  # type: ignore[index]


def test_optional_header_members() -> None:
    for header in ({"typ": None}, {"typ": "JOSE"}):
        assert parse_and_validate_jwt_svid(_sign(header=header), BUNDLE, AUD)


def test_several_audiences() -> None:
    token = _sign(claims=_claims(aud=["other", AUD]))
    assert parse_and_validate_jwt_svid(token, BUNDLE, AUD).audience == ("other", AUD)
    assert parse_and_validate_jwt_svid(token, BUNDLE, ["nope", "other"])
    assert parse_and_validate_jwt_svid(token, BUNDLE, {AUD})


def test_bundle_set_selects_by_trust_domain() -> None:
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = Bundle("other.org", jwt_authorities={"o": other_key.public_key()})
    bundles = {TD: BUNDLE, TrustDomain("other.org"): other}
    assert parse_and_validate_jwt_svid(_sign(), bundles, AUD).spiffe_id == SpiffeID.parse(SUB)
    foreign = _sign(kid="o", key=other_key, claims=_claims(sub="spiffe://other.org/agent/x"))
    assert str(parse_and_validate_jwt_svid(foreign, bundles, AUD).spiffe_id) == "spiffe://other.org/agent/x"


def test_rule_names_are_in_order() -> None:
    assert JWT_RULES[0] == "serialization" and JWT_RULES[-1] == "nbf"


# --- 1. serialization --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("token", "fragment"),
    [
        ("", "empty"),
        (b"a.b.c", "is a string"),
        ("a.b", "2 dot-separated parts"),
        ("a.b.c.d.e", "5 dot-separated parts"),
        ("abcd..efgh", "payload is empty"),
        ("abcd.efgh.", "signature is empty"),
        (".efgh.ijkl", "header is empty"),
        ("a+b.c.d", "header is not unpadded base64url"),
        ("abc=.b.c", "header is not unpadded base64url"),
        ("abcd.efgh.ij kl", "signature is not unpadded base64url"),
        ("abcd.efghi.ijkl", "payload is not unpadded base64url"),
        ('{"payload":"x","signatures":[]}', "JSON Serialization"),
        ("a." * 9000 + "b", "limit"),
    ],
)
def test_serialization(token: Any, fragment: str) -> None:
    _rule(token, "serialization", fragment)


# --- 2. header ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("token", "fragment"),
    [
        (_b64(b"not json") + ".e30.c2ln", "not base64url-encoded JSON"),
        (_b64(b"[1]") + ".e30.c2ln", "not a JSON object"),
        (_b64(b'{"alg":"ES256","alg":"none"}') + ".e30.c2ln", "repeats the member 'alg'"),
        (_raw({"alg": "ES256", "kid": "p256", "jku": "https://evil"}, _claims()), "jku"),
        (_raw({"alg": "ES256", "kid": "p256", "crit": ["exp"]}, _claims()), "crit"),
        (_raw({"alg": "ES256", "kid": "p256", "typ": "at+jwt"}, _claims()), "must be JWT or JOSE"),
    ],
)
def test_header(token: str, fragment: str) -> None:
    _rule(token, "header", fragment)


def test_header_with_embedded_key_is_rejected_even_when_signed() -> None:
    token = _sign(header={"jwk": ECKey.import_key(P256.public_key()).as_dict()})
    _rule(token, "header", "jwk")


# --- 3. alg ------------------------------------------------------------------------------------

def test_alg_none() -> None:
    _rule(_raw({"alg": "none", "kid": "p256"}, _claims(), b"x"), "alg", "'none'")
    _rule(_raw({"alg": "NONE", "kid": "p256"}, _claims(), b"x"), "alg", "'none'")


def test_alg_hmac_with_a_real_hmac_signature() -> None:
    # The classic confusion attack: HMAC keyed with the (public) verification key.
    secret = OctKey.import_key(b"k" * 32)
    token = jwt.encode({"alg": "HS256", "kid": "p256"}, _claims(), secret, algorithms=["HS256"])
    _rule(token, "alg", "HMAC")


@pytest.mark.parametrize("alg", ["EdDSA", "Ed25519"])
def test_alg_eddsa_with_a_real_signature(alg: str) -> None:
    key = OKPKey.import_key(ed25519.Ed25519PrivateKey.generate())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc flags "EdDSA" as deprecated (RFC 9864)
        token = jwt.encode({"alg": alg, "kid": "p256"}, _claims(), key, algorithms=[alg])
    _rule(token, "alg", "does not allow EdDSA")


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        ({"kid": "p256"}, "no alg"),
        ({"alg": 256, "kid": "p256"}, "not a string"),
        ({"alg": "ES256K", "kid": "p256"}, "not an allowed"),
        ({"alg": "RSA-OAEP", "kid": "p256"}, "not an allowed"),
        ({"alg": "es256", "kid": "p256"}, "not an allowed"),
    ],
)
def test_alg_other(header: dict[str, Any], fragment: str) -> None:
    _rule(_raw(header, _claims()), "alg", fragment)


@pytest.mark.parametrize(
    ("alg", "kid", "fragment"),
    [
        ("ES384", "p256", "does not fit the secp256r1"),
        ("ES256", "rsa", "does not fit the RSA key"),
        ("RS256", "p256", "does not fit the secp256r1"),
    ],
)
def test_alg_must_fit_the_key(alg: str, kid: str, fragment: str) -> None:
    _rule(_raw({"alg": alg, "kid": kid}, _claims()), "alg", fragment)


# --- 4. kid ------------------------------------------------------------------------------------

def test_kid() -> None:
    _rule(_sign(header={"kid": None}), "kid", "no kid")
    _rule(_raw({"alg": "ES256", "kid": ""}, _claims()), "kid", "non-empty string")
    _rule(_raw({"alg": "ES256", "kid": 7}, _claims()), "kid", "non-empty string")
    retired = ec.generate_private_key(ec.SECP256R1())
    _rule(_sign(kid="retired", key=retired), "kid", "no JWT authority with kid 'retired'")


# --- 5. signature ------------------------------------------------------------------------------

def test_signature_by_another_key_under_a_known_kid() -> None:
    _rule(_sign(kid="p256", key=ec.generate_private_key(ec.SECP256R1())), "signature",
          "does not verify")


def test_tampered_claims() -> None:
    header, _, signature = _sign().split(".")
    forged = _b64(json.dumps(_claims(sub="spiffe://mesh.local/agent/admin")).encode())
    _rule(f"{header}.{forged}.{signature}", "signature", "does not verify")


def test_garbage_signature() -> None:
    header, claims, _ = _sign().split(".")
    _rule(f"{header}.{claims}.{_b64(b'x' * 64)}", "signature", "does not verify")
    _rule(f"{header}.{claims}.AAAA", "signature", "does not verify")


# --- 6. sub ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("sub", "fragment"),
    [
        (None, "no sub claim"),
        (7, "not a string"),
        ("agent-1", "not a valid SPIFFE ID"),
        ("spiffe://mesh.local/agent/", "not a valid SPIFFE ID"),
        ("spiffe://other.org/agent/test", "outside trust domain mesh.local"),
    ],
)
def test_sub(sub: Any, fragment: str) -> None:
    _rule(_sign(claims=_claims(sub=sub)), "sub", fragment)


def test_sub_selects_only_its_own_bundle() -> None:
    # Signed by mesh.local's key, claiming another trust domain: the set has no bundle for it.
    token = _sign(claims=_claims(sub="spiffe://other.org/agent/test"))
    _rule(token, "sub", "no trust bundle for trust domain other.org", {TD: BUNDLE})
    bundles = {TD: BUNDLE, TrustDomain("other.org"): Bundle("other.org", jwt_authorities={
        "x": ec.generate_private_key(ec.SECP256R1()).public_key()})}
    _rule(token, "kid", "in the bundle of other.org", bundles)
    _rule(_sign(claims=_claims(sub="nope")), "sub", "not a valid SPIFFE ID", {TD: BUNDLE})


# --- 7. aud ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("aud", "fragment"),
    [
        (None, "no aud claim"),
        ([], "empty"),
        ([""], "empty"),
        (7, "string or a list of strings"),
        ([AUD, 7], "string or a list of strings"),
        ("other", "is for audience 'other', not for " + AUD),
        (["a", "b"], "is for audience 'a', 'b'"),
    ],
)
def test_aud(aud: Any, fragment: str) -> None:
    _rule(_sign(claims=_claims(aud=aud)), "aud", fragment)


@pytest.mark.parametrize("expected", ["", [], [""], None, 7, [None]])
def test_validator_must_name_its_audience(expected: Any) -> None:
    _rule(_sign(), "aud", "no audience to validate against", audience=expected)


# --- 8. exp ------------------------------------------------------------------------------------

def test_exp() -> None:
    _rule(_sign(claims=_claims(exp=None)), "exp", "no exp claim")
    _rule(_sign(claims=_claims(exp="tomorrow")), "exp", "number of seconds")
    _rule(_sign(claims=_claims(exp=True)), "exp", "number of seconds")
    _rule(_sign(claims=_claims(exp=10**20)), "exp", "out of range")
    _rule(_sign(claims=_claims(exp=int(time.time()) - 120)), "exp", "expired at")


def test_exp_leeway() -> None:
    exp = int(time.time())
    token = _sign(claims=_claims(exp=exp))
    at = dt.datetime.fromtimestamp(exp, dt.UTC)
    inside = at + DEFAULT_LEEWAY - dt.timedelta(seconds=1)
    assert parse_and_validate_jwt_svid(token, BUNDLE, AUD, now=inside)
    _rule(token, "exp", "expired", now=at + DEFAULT_LEEWAY + dt.timedelta(seconds=1))
    _rule(token, "exp", "expired", now=at + dt.timedelta(seconds=1), leeway=dt.timedelta(0))
    naive = (at - dt.timedelta(seconds=1)).replace(tzinfo=None)
    assert parse_and_validate_jwt_svid(token, BUNDLE, AUD, now=naive, leeway=dt.timedelta(0))


# --- 9. nbf ------------------------------------------------------------------------------------

def test_nbf() -> None:
    future = int(time.time()) + 120
    _rule(_sign(claims=_claims(nbf=future)), "nbf", "not valid before")
    _rule(_sign(claims=_claims(nbf="soon")), "nbf", "number of seconds")
    assert parse_and_validate_jwt_svid(_sign(claims=_claims(nbf=int(time.time()) + 5)), BUNDLE, AUD)


# --- claims shape ------------------------------------------------------------------------------

def test_claims_must_be_a_json_object_without_duplicates() -> None:
    header = {"alg": "ES256", "kid": "p256"}
    encoded = _b64(json.dumps(header).encode())
    _rule(f"{encoded}.{_b64(b'[1]')}.c2ln", "claims", "not a JSON object")
    dup = b'{"sub":"spiffe://mesh.local/a","sub":"spiffe://mesh.local/b"}'
    _rule(f"{encoded}.{_b64(dup)}.c2ln", "claims", "repeats the member 'sub'")
