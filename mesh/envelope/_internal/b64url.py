"""Unpadded base64url (RFC 4648 §5, RFC 7515 §2) with exactly one accepted spelling.

A signed field must not have two spellings on the wire, or two different
strings would carry the same signed bytes: padding, characters outside the
alphabet and set unused trailing bits are all refused. Decoding runs in C
(``binascii`` strict mode) plus a constant-time look at the last character,
since it sits on the path of every message received.
"""

from __future__ import annotations

import binascii

_URL_TO_STD = bytes.maketrans(b"-_", b"+/")
_STD_TO_URL = bytes.maketrans(b"+/", b"-_")
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_VALUE = {char: index for index, char in enumerate(_ALPHABET)}
# With 2 (3) characters in the last quantum, the low 4 (2) bits of the last one are unused.
_UNUSED_BITS = {2: 0x0F, 3: 0x03}
_PADDING = {0: b"", 2: b"==", 3: b"="}


def encode(data: bytes) -> str:
    encoded = binascii.b2a_base64(data, newline=False).translate(_STD_TO_URL)
    return encoded.rstrip(b"=").decode("ascii")


def decode(text: str) -> bytes:
    """Decode canonical unpadded base64url; raise ``ValueError`` saying why not."""
    if not text.isascii():
        raise ValueError("not unpadded base64url (allowed: A-Z a-z 0-9 - _, no '=')")
    raw = text.encode("ascii")
    # The standard alphabet's '+' and '/' would pass once '-' and '_' are translated.
    if b"+" in raw or b"/" in raw or b"=" in raw:
        raise ValueError("not unpadded base64url (allowed: A-Z a-z 0-9 - _, no '=')")
    remainder = len(raw) % 4
    if remainder == 1:
        raise ValueError("base64url text of impossible length")
    try:
        data = binascii.a2b_base64(
            raw.translate(_URL_TO_STD) + _PADDING[remainder], strict_mode=True
        )
    except binascii.Error:
        raise ValueError("not unpadded base64url (allowed: A-Z a-z 0-9 - _, no '=')") from None
    if remainder and _VALUE[raw[-1]] & _UNUSED_BITS[remainder]:
        raise ValueError("non-canonical base64url (unused trailing bits are set)")
    return data
