"""JWT-SVIDs from the registry CA, verified with joserfc against the published bundle."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError, ExpiredTokenError, InvalidClaimError
from joserfc.jwk import KeySet

from registry.ca import CAStateError, CertificateAuthority, JWTSVIDRequestRejected

TD = "example.org"
AGENT = "spiffe://example.org/agent/3J98t1WpEZ73CNmQviecrnyiWrnq"
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def ca(tmp_path: Path, clock: Clock) -> CertificateAuthority:
    return CertificateAuthority.open(tmp_path, TD, clock=clock)


def jwt_keys_from_bundle(ca: CertificateAuthority) -> KeySet:
    """The JWKS a relying party builds from the SPIFFE bundle document (not from the CA)."""
    doc = json.loads(ca.bundle().marshal())
    keys = []
    for entry in doc["keys"]:
        if entry.get("use") == "jwt-svid":
            # "jwt-svid" is the SPIFFE use; JOSE only knows sig/enc.
            keys.append({k: v for k, v in entry.items() if k != "use"})
    return KeySet.import_key_set({"keys": keys})


def verify(ca: CertificateAuthority, token: str, audience: str, now: datetime) -> dict[str, Any]:
    decoded = jwt.decode(token, jwt_keys_from_bundle(ca), algorithms=["ES256"])
    assert decoded.header == {"alg": "ES256", "kid": ca.active_jwt_authority().kid, "typ": "JWT"}
    registry = jwt.JWTClaimsRegistry(
        now=int(now.timestamp()),
        leeway=0,
        sub={"essential": True},
        aud={"essential": True, "value": audience},
        exp={"essential": True},
        iat={"essential": True},
    )
    registry.validate(decoded.claims)
    return decoded.claims


def test_jwt_svid_verifies_against_the_bundle(ca: CertificateAuthority) -> None:
    token = ca.sign_jwt_svid(AGENT, ["spiffe://example.org/tool-gateway"])
    claims = verify(ca, token, "spiffe://example.org/tool-gateway", T0)
    assert claims == {
        "sub": AGENT,
        "aud": ["spiffe://example.org/tool-gateway"],
        "iat": int(T0.timestamp()),
        "exp": int((T0 + timedelta(minutes=5)).timestamp()),
    }


def test_single_string_audience_stays_a_string(ca: CertificateAuthority) -> None:
    claims = verify(ca, ca.sign_jwt_svid(AGENT, "svc"), "svc", T0)
    assert claims["aud"] == "svc"


def test_duplicate_audiences_are_folded(ca: CertificateAuthority) -> None:
    claims = verify(ca, ca.sign_jwt_svid(AGENT, ["a", "b", "a"]), "b", T0)
    assert claims["aud"] == ["a", "b"]


def test_expired_or_wrong_audience_token_fails_verification(ca: CertificateAuthority) -> None:
    token = ca.sign_jwt_svid(AGENT, "svc", ttl=timedelta(minutes=1))
    with pytest.raises(ExpiredTokenError):
        verify(ca, token, "svc", T0 + timedelta(minutes=2))
    with pytest.raises(InvalidClaimError, match="aud"):
        verify(ca, token, "other", T0)


def test_tampered_token_fails(ca: CertificateAuthority) -> None:
    token = ca.sign_jwt_svid(AGENT, "svc")
    header, _payload, signature = token.split(".")
    forged_claims = json.dumps({"sub": "spiffe://example.org/admin", "aud": "svc"}).encode()
    forged = base64.urlsafe_b64encode(forged_claims).rstrip(b"=").decode()
    with pytest.raises(BadSignatureError):
        jwt.decode(f"{header}.{forged}.{signature}", jwt_keys_from_bundle(ca), algorithms=["ES256"])


def test_ttl_is_capped_and_bounded_by_the_key(tmp_path: Path, clock: Clock) -> None:
    ca = CertificateAuthority.open(tmp_path, TD, clock=clock, ca_ttl=timedelta(minutes=30))
    capped = verify(ca, ca.sign_jwt_svid(AGENT, "svc", ttl=timedelta(days=1)), "svc", T0)
    assert capped["exp"] == int((T0 + timedelta(minutes=30)).timestamp())
    other = CertificateAuthority.open(tmp_path / "b", TD, clock=clock)
    hour = verify(other, other.sign_jwt_svid(AGENT, "svc", ttl=timedelta(days=1)), "svc", T0)
    assert hour["exp"] == int((T0 + timedelta(hours=1)).timestamp())
    clock.now = T0 + timedelta(hours=1)
    with pytest.raises(CAStateError, match="expired"):
        ca.sign_jwt_svid(AGENT, "svc")


@pytest.mark.parametrize(
    ("audience", "message"),
    [
        ([], "audience is empty"),
        ("", "an audience is empty"),
        (["ok", ""], "an audience is empty"),
        (["  "], "an audience is empty"),
        ("x" * 513, "513 bytes; the limit is 512"),
        ([f"a{i}" for i in range(17)], "17 audiences; the limit is 16"),
        ([1], "must be a string"),
        (b"svc", "string or a list"),
        (None, "string or a list"),
    ],
)
def test_bad_audience_is_refused_precisely(
    ca: CertificateAuthority, audience: Any, message: str
) -> None:
    with pytest.raises(JWTSVIDRequestRejected, match=message):
        ca.sign_jwt_svid(AGENT, audience)


@pytest.mark.parametrize(
    ("spiffe_id", "ttl", "message"),
    [
        ("spiffe://other.org/agent/x", timedelta(minutes=5), "outside this CA's trust domain"),
        ("spiffe://example.org", timedelta(minutes=5), "trust domain itself"),
        ("not an id", timedelta(minutes=5), "scheme"),
        (AGENT, timedelta(0), "not a positive duration"),
        (AGENT, timedelta(seconds=-1), "not a positive duration"),
    ],
)
def test_bad_subject_or_ttl_is_refused(
    ca: CertificateAuthority, spiffe_id: str, ttl: timedelta, message: str
) -> None:
    with pytest.raises(JWTSVIDRequestRejected, match=message):
        ca.sign_jwt_svid(spiffe_id, "svc", ttl=ttl)
