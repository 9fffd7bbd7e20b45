"""did:mesh derivation: the published vectors (docs/identity.md), round trips, malformed input."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.did import DID, DID_PREFIX
from mesh.errors import InvalidIdentifier, WeakKeyError
from mesh.keys import IdentityKey

# (seed, public key, SHA-256(public key)[:20], DID): the same table as docs/identity.md.
VECTORS = [
    (
        "0000000000000000000000000000000000000000000000000000000000000000",
        "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29",
        "139e3940e64b5491722088d9a0d741628fc826e0",
        "did:mesh:GrRZYotwid5A4FxaddwPxsxChzo",
    ),
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "21fe31dfa154a261626bf854046fd2271b7bed4b",
        "did:mesh:UU7vp1MiYgmGysytAnPhkNsFuu4",
    ),
    (
        "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
        "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664",
        "65b60673d6ed884bf01c2c222d82ada0740f29ac",
        "did:mesh:2RBopAKS8TrBR5iozSj3TAJoyUno",
    ),
    (
        "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "76a1592044a6e4f511265bca73a604d90b0529d1df602be30a19a9257660d1f5",
        "af822958f2d75afb91f8a8f4da253230d63bebf8",
        "did:mesh:3SpQjniiiDsK15kePzuaiHs1bd4j",
    ),
    (
        # The digest starts with a zero byte, so the id starts with base58's zero digit '1'.
        "0000000000000000000000000000000000000000000000000000000000000277",
        "0f8df27c22af877a0296fae9ffdc542af91f2be99e8c637bcd0e7fd27ebdc345",
        "00f4c09bfb7ffaa86014fb823a84485f09b80193",
        "did:mesh:1mooxKncjUVqQXymhfzgdiM9RjG",
    ),
]

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _b58encode(data: bytes) -> str:
    """Independent base58btc encoder, so the vectors do not only agree with the library."""
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


@pytest.mark.parametrize(("seed", "public_key", "prefix", "did"), VECTORS)
def test_published_vectors(seed: str, public_key: str, prefix: str, did: str) -> None:
    key = IdentityKey.from_seed(bytes.fromhex(seed))
    assert key.public_key.hex() == public_key
    assert hashlib.sha256(key.public_key).digest()[:20].hex() == prefix
    assert DID_PREFIX + _b58encode(bytes.fromhex(prefix)) == did
    assert str(key.did()) == did
    assert str(DID.from_public_key(bytes.fromhex(public_key))) == did
    parsed = DID.parse(did)
    assert parsed.digest.hex() == prefix
    assert parsed.matches_key(key.public_key)


def test_rfc8032_test1_public_key() -> None:
    # Anchors the vector table to RFC 8032 section 7.1, TEST 1.
    assert VECTORS[1][1] == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_round_trip(seed: bytes) -> None:
    key = IdentityKey.from_seed(seed)
    did = key.did()
    text = str(did)
    assert text.startswith("did:mesh:")
    assert DID.parse(text) == did
    assert str(DID.parse(text)) == text
    assert did.digest == hashlib.sha256(key.public_key).digest()[:20]
    assert DID(did.id) == did
    assert did.matches_key(key.public_key)
    other = IdentityKey.from_seed(bytes(a ^ 1 for a in seed))
    assert not did.matches_key(other.public_key)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=20, max_size=20))
def test_every_20_byte_digest_has_one_spelling(digest: bytes) -> None:
    text = DID_PREFIX + _b58encode(digest)
    assert DID.parse(text).digest == digest
    if digest[0] == 0:
        # Dropping the leading zero digit changes the decoded length.
        with pytest.raises(InvalidIdentifier, match="decodes to 19 bytes"):
            DID.parse(DID_PREFIX + _b58encode(digest)[1:])


GOOD = VECTORS[0][3]
GOOD_ID = GOOD.removeprefix(DID_PREFIX)
ZERO_LED_ID = VECTORS[4][3].removeprefix(DID_PREFIX)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("did:web:" + GOOD_ID, "unsupported DID method 'web'"),
        ("did:MESH:" + GOOD_ID, "unsupported DID method 'MESH'"),
        ("mesh:" + GOOD_ID, "is not a DID"),
        ("DID:mesh:" + GOOD_ID, "is not a DID"),
        ("did:mesh", "is not a DID"),
        (GOOD_ID, "is not a DID"),
        ("", "is not a DID"),
        ("did:mesh:", "empty id"),
        ("did:mesh:" + GOOD_ID[:-1] + "0", "outside base58btc: '0'"),
        ("did:mesh:" + GOOD_ID[:-1] + "O", "outside base58btc: 'O'"),
        ("did:mesh:" + GOOD_ID[:-1] + "l", "outside base58btc: 'l'"),
        ("did:mesh:" + GOOD_ID[:-1] + "I", "outside base58btc: 'I'"),
        ("did:mesh:" + GOOD_ID[:-2] + "é", "outside base58btc"),
        ("did:mesh:" + GOOD_ID[:-2] + ":x", "outside base58btc: ':'"),
        ("did:mesh:" + GOOD_ID[:-4], "decodes to 17 bytes"),
        ("did:mesh:" + GOOD_ID + "z", "decodes to 21 bytes"),
        ("did:mesh:zzzzzzzzzzzzzzzzzzzzzzzzzzzz", "decodes to 21 bytes"),
        # Non-canonical spellings: extra or missing leading '1's change the decoded length.
        ("did:mesh:1" + GOOD_ID, "decodes to 21 bytes"),
        ("did:mesh:11" + GOOD_ID[:-1], "decodes to 21 bytes"),
        ("did:mesh:" + ZERO_LED_ID[1:], "decodes to 19 bytes"),
        ("did:mesh:" + "1" * 20, None),  # twenty zero bytes: canonical, accepted
        ("did:mesh:" + "1" * 21, "decodes to 21 bytes"),
        ("did:mesh:" + "2" * 29, "29 characters"),
        ("did:mesh:" + "z" * 10_000, "10000 characters"),
    ],
)
def test_malformed(text: str, message: str | None) -> None:
    if message is None:
        assert DID.parse(text).digest == bytes(20)
        return
    with pytest.raises(InvalidIdentifier) as info:
        DID.parse(text)
    assert message in str(info.value)


@pytest.mark.parametrize("value", [None, 42, b"did:mesh:" + GOOD_ID.encode(), ["did:mesh:x"]])
def test_not_a_string(value: object) -> None:
    with pytest.raises(InvalidIdentifier, match="a DID is a string, got"):
        DID.parse(value)  # type: ignore[arg-type]


def test_constructor_validates_id() -> None:
    assert DID(GOOD_ID) == DID.parse(GOOD)
    with pytest.raises(InvalidIdentifier, match="empty id"):
        DID("")
    with pytest.raises(InvalidIdentifier, match="decodes to 21 bytes"):
        DID("1" + GOOD_ID)


WEAK_KEYS = [
    # identity point (order 1)
    "0100000000000000000000000000000000000000000000000000000000000000",
    # y = -1 (order 2)
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    # y = p, a non-canonical encoding of y = 0
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    # the RFC 8032 key plus a point of order 2: not in the prime-order subgroup
    None,
]


def _mixed_order_key() -> bytes:
    from nacl.bindings import crypto_core_ed25519_add

    honest = bytes.fromhex(VECTORS[1][1])
    order2 = bytes.fromhex(WEAK_KEYS[1] or "")
    return bytes(crypto_core_ed25519_add(honest, order2))


@pytest.mark.parametrize("index", range(len(WEAK_KEYS)))
def test_weak_inception_key_rejected(index: int) -> None:
    hex_key = WEAK_KEYS[index]
    key = bytes.fromhex(hex_key) if hex_key else _mixed_order_key()
    with pytest.raises(WeakKeyError, match="non-canonical, of small order"):
        DID.from_public_key(key)
    assert not DID.parse(GOOD).matches_key(key)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_wrong_key_length_rejected(size: int) -> None:
    with pytest.raises(WeakKeyError, match=f"got {size}"):
        DID.from_public_key(bytes(size))
