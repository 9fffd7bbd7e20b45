from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mesh.keys import IdentityKey
from mesh.registration import proof_message, sign_proof, verify_proof

KEY = IdentityKey.from_seed(bytes(range(32)))
NONCE = b"\x07" * 32
CSR = b"csr-der-bytes"


def test_proof_round_trip() -> None:
    proof = sign_proof(KEY, "mesh.local", NONCE, CSR)
    assert verify_proof("mesh.local", NONCE, KEY.public_key, CSR, proof)


def test_proof_is_bound_to_domain_challenge_key_and_csr() -> None:
    proof = sign_proof(KEY, "mesh.local", NONCE, CSR)
    other = IdentityKey.from_seed(bytes(32))
    assert not verify_proof("other.local", NONCE, KEY.public_key, CSR, proof)
    assert not verify_proof("mesh.local", b"\x08" * 32, KEY.public_key, CSR, proof)
    assert not verify_proof("mesh.local", NONCE, other.public_key, CSR, proof)
    assert not verify_proof("mesh.local", NONCE, KEY.public_key, CSR + b"x", proof)


_text = st.text(min_size=0, max_size=12)


@given(_text, st.binary(max_size=12), _text, st.binary(max_size=12))
def test_distinct_fields_never_give_the_same_message(
    d1: str, c1: bytes, d2: str, c2: bytes
) -> None:
    same = proof_message(d1, c1, KEY.public_key, CSR) == proof_message(d2, c2, KEY.public_key, CSR)
    assert same == ((d1, c1) == (d2, c2))
