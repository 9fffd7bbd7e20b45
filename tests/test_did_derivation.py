"""DID, key id and agent SPIFFE ID derivation take shortcuts that must not change a
single character: base58btc against the ``base58`` package, a derived DID against
the validating constructor, the kid against the RFC 7638 JSON it stands for, the
agent SPIFFE ID against the segment-checking builder."""

from __future__ import annotations

import base64
import hashlib
import json

import base58
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.did import DID, _base58
from mesh.errors import InvalidIdentifier
from mesh.keys import IdentityKey
from mesh.keys.identity_key import key_id
from mesh.spiffeid import AGENT_SEGMENT, SpiffeID, TrustDomain, agent_spiffe_id

# Leading zero bytes matter to base58 (each is a "1"): draw plenty of them.
byte_strings = st.lists(
    st.one_of(st.just(0), st.integers(0, 255)), max_size=48
).map(bytes)


@settings(max_examples=500, deadline=None)
@given(data=byte_strings)
def test_base58_matches_the_reference(data: bytes) -> None:
    text = _base58.encode(data)
    assert text == base58.b58encode(data).decode("ascii")
    assert _base58.decode(text) == data == base58.b58decode(text)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=_base58.ALPHABET, max_size=40))
def test_base58_decodes_any_string_as_the_reference(text: str) -> None:
    assert _base58.decode(text) == base58.b58decode(text)


def test_base58_refuses_characters_outside_the_alphabet() -> None:
    for bad in ("0", "O", "I", "l", "é", "+"):
        with pytest.raises(ValueError):
            _base58.decode("abc" + bad)


def test_derived_dids_are_what_the_validating_constructor_accepts() -> None:
    for _ in range(200):
        key = IdentityKey.generate().public_key
        did = DID.from_public_key(key)
        reference = base58.b58encode(hashlib.sha256(key).digest()[:20]).decode("ascii")
        assert did == DID(reference) == DID.parse(str(did))
        assert did.digest == hashlib.sha256(key).digest()[:20]


def test_non_canonical_ids_are_still_refused() -> None:
    canonical = str(DID.from_public_key(IdentityKey.generate().public_key))[len("did:mesh:"):]
    with pytest.raises(InvalidIdentifier):
        DID("1" + canonical)


def test_key_ids_are_the_rfc7638_thumbprint() -> None:
    for _ in range(100):
        key = IdentityKey.generate().public_key
        x = base64.urlsafe_b64encode(key).rstrip(b"=").decode("ascii")
        canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode("ascii")).digest()
        assert key_id(key) == base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@pytest.mark.parametrize("trust_domain", ["td", "example.org", "a-b_c.d"])
def test_agent_spiffe_ids_are_what_the_checking_builder_makes(trust_domain: str) -> None:
    td = TrustDomain.parse(trust_domain)
    for _ in range(50):
        did = DID.from_public_key(IdentityKey.generate().public_key)
        reference = SpiffeID.from_segments(td, AGENT_SEGMENT, did.id)
        for made in (agent_spiffe_id(td, did), agent_spiffe_id(trust_domain, str(did))):
            assert made == reference
            assert str(made) == str(reference) == f"spiffe://{trust_domain}/agent/{did.id}"
            assert SpiffeID.parse(str(made)) == made
            assert made.segments == (AGENT_SEGMENT, did.id)
