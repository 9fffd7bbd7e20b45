"""SPIFFE trust bundles: the JWK Set format, the consumer rules of the specs, and round trips."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from _pki import make_ca
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.bundle import Bundle, BundleError
from mesh.spiffeid import TrustDomain

TD = TrustDomain("mesh.local")
CA1 = make_ca("mesh.local", name="root one")
CA2 = make_ca("mesh.local", name="root two")
EC_KEY = ec.generate_private_key(ec.SECP256R1()).public_key()
EC384_KEY = ec.generate_private_key(ec.SECP384R1()).public_key()
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _der(cert: Any) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _full() -> Bundle:
    return Bundle(TD, [CA1.cert, CA2.cert], {"k1": EC_KEY, "k2": RSA_KEY, "k3": EC384_KEY}, 7, 300)


def _doc(bundle: Bundle) -> dict[str, Any]:
    return json.loads(bundle.marshal())


def test_marshal_shape() -> None:
    doc = _doc(_full())
    assert doc["spiffe_sequence"] == 7
    assert doc["spiffe_refresh_hint"] == 300
    x509_keys = [k for k in doc["keys"] if k["use"] == "x509-svid"]
    jwt_keys = [k for k in doc["keys"] if k["use"] == "jwt-svid"]
    assert len(x509_keys) == 2 and len(jwt_keys) == 3
    for entry in x509_keys:
        assert "kid" not in entry  # X509-SVID spec 6.1: kid MUST NOT be set
        assert len(entry["x5c"]) == 1
        assert entry["kty"] == "EC" and entry["crv"] == "P-256"
    assert _b64(_der(CA1.cert)) == x509_keys[0]["x5c"][0]
    assert {k["kid"] for k in jwt_keys} == {"k1", "k2", "k3"}
    rsa_entry = next(k for k in jwt_keys if k["kid"] == "k2")
    assert rsa_entry["kty"] == "RSA" and rsa_entry["e"] == "AQAB"


def test_round_trip() -> None:
    bundle = _full()
    again = Bundle.parse(bundle.marshal(), TD)
    assert again == bundle
    assert again.marshal() == bundle.marshal()
    assert again.skipped == ()
    assert Bundle.parse(bundle.marshal().decode(), "mesh.local") == bundle


def test_trust_domain_comes_from_the_caller() -> None:
    data = _full().marshal()
    assert Bundle.parse(data, "other.org").trust_domain == TrustDomain("other.org")
    assert Bundle.parse(data, "other.org") != _full()


def test_equality_and_with_sequence() -> None:
    bundle = _full()
    assert bundle.with_sequence(8) != bundle
    assert bundle.with_sequence(8).sequence == 8
    assert bundle.with_sequence(8).with_sequence(7) == bundle
    assert bundle.with_refresh_hint(None).refresh_hint is None
    assert hash(bundle) == hash(Bundle.parse(bundle.marshal(), TD))
    assert Bundle(TD, [CA1.cert]) != Bundle(TD, [CA2.cert])
    assert Bundle(TD, jwt_authorities={"a": EC_KEY}) != Bundle(TD, jwt_authorities={"b": EC_KEY})
    assert bundle != "bundle"


def test_duplicate_authorities_are_kept_once() -> None:
    assert Bundle(TD, [CA1.cert, CA1.cert, CA2.cert]).x509_authorities == (CA1.cert, CA2.cert)


def test_views() -> None:
    bundle = _full()
    assert bundle.jwt_authority("k1") == EC_KEY
    assert bundle.jwt_authority("nope") is None
    assert bundle.has_x509_authority(CA1.cert)
    assert not bundle.has_x509_authority(make_ca().cert)
    assert not bundle.empty and Bundle(TD).empty
    with pytest.raises(TypeError):
        bundle.jwt_authorities["k9"] = EC_KEY  # type: ignore[index]
    assert "mesh.local" in repr(bundle) and "BEGIN" not in repr(bundle)


def test_pem_round_trip() -> None:
    bundle = Bundle(TD, [CA1.cert, CA2.cert], sequence=3)
    pem = bundle.x509_pem()
    assert pem.count(b"BEGIN CERTIFICATE") == 2
    assert Bundle.from_x509_pem(TD, pem, sequence=3) == bundle
    assert Bundle.from_x509_pem("mesh.local", pem.decode()).x509_authorities == (CA1.cert, CA2.cert)


@pytest.mark.parametrize(
    ("pem", "fragment"),
    [(b"", "no PEM certificate"), (b"hello", "no PEM certificate"),
     (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "do not parse")],
)
def test_bad_pem(pem: bytes, fragment: str) -> None:
    with pytest.raises(BundleError) as info:
        Bundle.from_x509_pem(TD, pem)
    assert fragment in str(info.value)


def test_empty_keys_is_a_valid_but_empty_bundle() -> None:
    bundle = Bundle.parse(b'{"keys": []}', TD)
    assert bundle.empty and bundle.sequence == 0 and bundle.refresh_hint is None


def test_unknown_members_are_allowed() -> None:
    # Trust Domain and Bundle spec 4.1: other JWK Set parameters MAY be present.
    doc = _doc(_full()) | {"x-vendor": {"a": 1}}
    assert Bundle.parse(json.dumps(doc), TD) == _full()


# --- entries the specs say to ignore ----------------------------------------------------------

def _one(entry: dict[str, Any]) -> bytes:
    return json.dumps({"keys": [entry], "spiffe_sequence": 1}).encode()


def _x509_entry(**changes: Any) -> dict[str, Any]:
    entry = _doc(Bundle(TD, [CA1.cert]))["keys"][0]
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


def _jwt_entry(key: Any = EC_KEY, **changes: Any) -> dict[str, Any]:
    entry = _doc(Bundle(TD, jwt_authorities={"k1": key}))["keys"][0]
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (_x509_entry(use=None), "use None"),
        (_x509_entry(use="enc"), "use 'enc'"),
        (_x509_entry(use="X509-SVID"), "use 'X509-SVID'"),  # values are case sensitive
        (_x509_entry(use=7), "use 7"),
        (_jwt_entry(kty="oct", k="c2VjcmV0"), "unknown key type 'oct'"),
        (_x509_entry(x5c=None), "without x5c"),
        (_x509_entry(x5c=[]), "without x5c"),
        (_jwt_entry(crv="secp256k1"), "EC curve 'secp256k1'"),
        ({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
          "use": "jwt-svid", "kid": "ed"}, "key type 'OKP'"),
    ],
)
def test_ignored_entries(entry: dict[str, Any], reason: str) -> None:
    bundle = Bundle.parse(_one(entry), TD)
    assert bundle.empty
    assert len(bundle.skipped) == 1 and reason in bundle.skipped[0]


def test_ignored_entries_do_not_hide_good_ones() -> None:
    doc = _doc(_full())
    doc["keys"].insert(0, {"kty": "RSA", "use": "sig", "n": "AQAB", "e": "AQAB"})
    assert Bundle.parse(json.dumps(doc), TD) == _full()


def test_only_the_first_x5c_value_counts() -> None:
    entry = _x509_entry(x5c=[_b64(_der(CA1.cert)), _b64(_der(CA2.cert)), "not even base64!"])
    assert Bundle.parse(_one(entry), TD).x509_authorities == (CA1.cert,)


def test_x509_entry_without_key_members_uses_the_certificate() -> None:
    entry = {"use": "x509-svid", "kty": "EC", "x5c": [_b64(_der(CA1.cert))]}
    assert Bundle.parse(_one(entry), TD).x509_authorities == (CA1.cert,)


def test_rsa_and_ed25519_x509_authorities_round_trip() -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    certs = []
    for key in (rsa.generate_private_key(public_exponent=65537, key_size=2048),
                ed25519.Ed25519PrivateKey.generate()):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")])
        import datetime as dt
        start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(1)
                   .not_valid_before(start).not_valid_after(start + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), True))
        algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
        certs.append(builder.sign(key, algorithm))
    bundle = Bundle(TD, certs)
    kinds = [k["kty"] for k in _doc(bundle)["keys"]]
    assert kinds == ["RSA", "OKP"]
    assert Bundle.parse(bundle.marshal(), TD) == bundle


# --- malformed documents and entries -----------------------------------------------------------

@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[]", "JSON array, not an object"),
        (b"null", "JSON null, not an object"),
        (b"{}", "no 'keys'"),
        (b'{"keys": {}}', "not an array"),
        (b'{"keys": null}', "not an array"),
        (b'{"keys": [], "keys": []}', "repeats the JSON member 'keys'"),
        (b'{"keys": [], "spiffe_sequence": "1"}', "spiffe_sequence must be an integer"),
        (b'{"keys": [], "spiffe_sequence": 1.5}', "spiffe_sequence must be an integer"),
        (b'{"keys": [], "spiffe_sequence": true}', "spiffe_sequence must be an integer"),
        (b'{"keys": [], "spiffe_sequence": -1}', "outside 0..2^64-1"),
        (b'{"keys": [], "spiffe_sequence": 18446744073709551616}', "outside 0..2^64-1"),
        (b'{"keys": [], "spiffe_refresh_hint": "5m"}', "spiffe_refresh_hint must be an integer"),
        (b'{"keys": [], "spiffe_refresh_hint": -5}', "negative"),
        (b'{"keys": [1]}', "keys[0] is a JSON number"),
        (b'{"keys": [[]]}', "keys[0] is a JSON array"),
        (b'[' * 100000 + b']' * 100000, "not valid JSON"),
        (b" " * (4 * 1024 * 1024 + 1), "limit"),
    ],
)
def test_malformed_documents(data: bytes, fragment: str) -> None:
    with pytest.raises(BundleError) as info:
        Bundle.parse(data, TD)
    assert fragment in str(info.value)


def test_sequence_limits() -> None:
    data = b'{"keys": [], "spiffe_sequence": 18446744073709551615}'
    assert Bundle.parse(data, TD).sequence == 2**64 - 1


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        (_x509_entry(kty=None), "has no 'kty'"),
        (_x509_entry(x5c="MIIB"), "x5c is a JSON string, not an array"),
        (_x509_entry(x5c=[5]), "x5c[0] is a JSON number"),
        (_x509_entry(x5c=["%%%"]), "not valid base64"),
        (_x509_entry(x5c=[_b64(_der(CA1.cert)).replace("+", "-").replace("/", "_") + "-_"]),
         "not valid base64"),
        (_x509_entry(x5c=[_b64(b"not a certificate")]), "not a DER X.509 certificate"),
        (_x509_entry(x=_doc(Bundle(TD, [CA2.cert]))["keys"][0]["x"]), "'x' does not match"),
        (_x509_entry(kty="RSA"), "'kty' does not match"),
        (_jwt_entry(kid=None), "without a 'kid'"),
        (_jwt_entry(kid=""), "without a 'kid'"),
        (_jwt_entry(kid=3), "without a 'kid'"),
        (_jwt_entry(crv=None), "needs a 'crv'"),
        (_jwt_entry(x=None), "x must be a non-empty base64url"),
        (_jwt_entry(x="AAAA="), "not valid unpadded base64url"),
        (_jwt_entry(x="A+/A"), "not valid unpadded base64url"),
        (_jwt_entry(x="AAAA"), "coordinates are 32 bytes"),
        (_jwt_entry(y=_doc(Bundle(TD, jwt_authorities={"a": ec.generate_private_key(
            ec.SECP256R1()).public_key()}))["keys"][0]["y"]), "not on P-256"),
        (_jwt_entry(d="AAAA"), "private key"),
        (_jwt_entry(RSA_KEY, d="AAAA"), "private RSA parameters"),
        (_jwt_entry(RSA_KEY, n=None), "n must be a non-empty"),
        (_jwt_entry(RSA_KEY, e="Ag"), "invalid RSA public key"),
        (_jwt_entry(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(),
                    n=base64.urlsafe_b64encode((2**1023 + 1).to_bytes(128, "big")).decode()
                    .rstrip("=")), "1024 bits"),
    ],
)
def test_malformed_entries(entry: dict[str, Any], fragment: str) -> None:
    with pytest.raises(BundleError) as info:
        Bundle.parse(_one(entry), TD)
    assert fragment in str(info.value)
    assert "keys[0]" in str(info.value)


def test_duplicate_kid() -> None:
    data = json.dumps({"keys": [_jwt_entry(), _jwt_entry(RSA_KEY)]})
    with pytest.raises(BundleError, match="repeats the JWT authority kid 'k1'"):
        Bundle.parse(data, TD)


# --- construction ------------------------------------------------------------------------------

def test_constructor_checks() -> None:
    with pytest.raises(BundleError, match="trust domain"):
        Bundle("Mesh.Local")
    with pytest.raises(BundleError, match="not a certificate"):
        Bundle(TD, [b"pem"])  # type: ignore[list-item]
    with pytest.raises(BundleError, match="cannot verify JWT-SVIDs"):
        Bundle(TD, jwt_authorities={"k": ed25519.Ed25519PrivateKey.generate().public_key()})  # type: ignore[dict-item]
    with pytest.raises(BundleError, match="non-empty string key id"):
        Bundle(TD, jwt_authorities={"": EC_KEY})
    with pytest.raises(BundleError, match="P-256, P-384 or P-521"):
        Bundle(TD, jwt_authorities={"k": ec.generate_private_key(ec.SECP256K1()).public_key()})
    with pytest.raises(BundleError, match="at least 2048"):
        Bundle(TD, jwt_authorities={"k": rsa.generate_private_key(65537, 1024).public_key()})
    with pytest.raises(BundleError, match="spiffe_sequence"):
        Bundle(TD, sequence=-1)
    with pytest.raises(BundleError, match="spiffe_refresh_hint"):
        Bundle(TD, refresh_hint=1.5)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["keys", "use", "kty", "kid", "x5c", "crv", "x", "y", "n", "e",
                         "spiffe_sequence", "spiffe_refresh_hint"]), inner, max_size=6),
    max_leaves=20,
))
def test_arbitrary_json_never_crashes(doc: Any) -> None:
    try:
        Bundle.parse(json.dumps(doc), TD)
    except BundleError:
        pass
