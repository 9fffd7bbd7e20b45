"""Unpadded base64url (RFC 4648 §5, RFC 7515 §2) with exactly one accepted spelling.

A signed field must not have two spellings on the wire, or two different
strings would carry the same signed bytes: padding, characters outside the
alphabet and set unused trailing bits are all refused.
"""

from __future__ import annotations

import base64
import binascii
import re

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode(text: str) -> bytes:
    """Decode canonical unpadded base64url; raise ``ValueError`` saying why not."""
    if not _ALPHABET.fullmatch(text):
        raise ValueError("not unpadded base64url (allowed: A-Z a-z 0-9 - _, no '=')")
    if len(text) % 4 == 1:
        raise ValueError("base64url text of impossible length")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:  # pragma: no cover - the checks above exclude it
        raise ValueError("not unpadded base64url") from exc
    # Unused low bits set in the last character give another spelling of the same bytes.
    if len(text) % 4 and encode(raw) != text:
        raise ValueError("non-canonical base64url (unused trailing bits are set)")
    return raw
