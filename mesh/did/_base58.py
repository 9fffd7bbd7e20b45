"""Base58btc (Bitcoin alphabet) for DID ids, two digits per big-integer step.

The ``base58`` package spends one big-integer division and one string
operation per digit; a DID id is derived for every registration and checked
for every parsed DID, so these do half the divisions (by 58**2, through a
table of digit pairs). Tests check both directions against ``base58``.
"""

from __future__ import annotations

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE = len(ALPHABET)
_PAIR_BASE = _BASE * _BASE
# _PAIRS[i] is the two digits of i (0 <= i < 58**2), most significant first.
_PAIRS = tuple(high + low for high in ALPHABET for low in ALPHABET)
_VALUE = {char: index for index, char in enumerate(ALPHABET)}
_ZERO = ALPHABET[0]


def encode(data: bytes) -> str:
    """``data`` in base58btc: one ``1`` per leading zero byte, then the number's digits."""
    number = int.from_bytes(data, "big")
    pairs = []
    while number:
        number, rest = divmod(number, _PAIR_BASE)
        pairs.append(_PAIRS[rest])
    digits = "".join(reversed(pairs)).lstrip(_ZERO)
    zeros = len(data) - len(data.lstrip(b"\0"))
    return _ZERO * zeros + digits


def decode(text: str) -> bytes:
    """The bytes ``text`` encodes; ValueError for a character outside the alphabet."""
    number = 0
    value = _VALUE
    try:
        for char in text:
            number = number * _BASE + value[char]
    except KeyError:
        raise ValueError("not a base58btc string") from None
    zeros = len(text) - len(text.lstrip(_ZERO))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return b"\0" * zeros + body
