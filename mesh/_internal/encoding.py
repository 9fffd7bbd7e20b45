"""Unambiguous byte encodings for everything that gets signed.

Each signed structure starts with its own domain-separation tag and then
lists its fields, every one prefixed by its length as an unsigned 64-bit
big-endian integer. No two different field lists encode to the same bytes,
and a signature made for one structure can never be read as another's.
"""

from __future__ import annotations

import struct

_LEN = struct.Struct(">Q")


def length_prefixed(tag: bytes, *fields: bytes) -> bytes:
    """``tag`` followed by each field as ``len(field) || field``."""
    parts = [_LEN.pack(len(tag)), tag]
    for field in fields:
        parts.append(_LEN.pack(len(field)))
        parts.append(field)
    return b"".join(parts)
