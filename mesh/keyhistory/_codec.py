"""Byte and text encodings of the key history, all canonical (one spelling per value).

A history must fail to verify when any byte of any field is changed, so every
textual field has exactly one accepted spelling: base64url without padding,
UTC timestamps in one fixed layout, and the signed bytes are a length-prefixed
encoding that no two different field lists can share.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime, timedelta

from mesh.errors import KeyHistoryError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_B64U = re.compile(r"[A-Za-z0-9_-]*")
# Seconds always; a fraction only when it is non-zero, and then always six digits.
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z")


def fail(index: int | None, rule: str, detail: str, hint: str | None = None) -> KeyHistoryError:
    """A :class:`KeyHistoryError` naming the entry and the rule that failed."""
    where = "key history" if index is None else f"key history entry {index}"
    return KeyHistoryError(f"{where}: rule {rule!r} failed: {detail}", hint=hint)


def b64u_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    """Decode unpadded base64url; raise ValueError unless ``text`` is its canonical spelling."""
    if not _B64U.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError("not unpadded base64url") from exc
    if b64u_encode(raw) != text:
        # Unused low bits set in the last character: another spelling of the same bytes.
        raise ValueError("non-canonical base64url (unused trailing bits are set)")
    return raw


def check_aware(at: datetime, what: str) -> datetime:
    """Return ``at`` in UTC; a naive datetime is refused rather than guessed."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise KeyHistoryError(
            f"{what} is a naive datetime",
            hint="pass a timezone-aware time such as datetime.now(timezone.utc)",
        )
    return at.astimezone(UTC)


def format_time(at: datetime) -> str:
    at = at.astimezone(UTC)
    text = at.strftime("%Y-%m-%dT%H:%M:%S")
    if at.microsecond:
        text += f".{at.microsecond:06d}"
    return text + "Z"


def parse_time(text: str) -> datetime:
    """Parse a timestamp written by :func:`format_time`; any other spelling is a ValueError."""
    if not _TIME.fullmatch(text):
        raise ValueError("expected YYYY-MM-DDTHH:MM:SS[.ffffff]Z")
    at = datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)
    if format_time(at) != text:
        raise ValueError("non-canonical timestamp (write a fraction only when non-zero)")
    return at


def micros(at: datetime) -> int:
    """Microseconds since the Unix epoch: the signed, unambiguous form of a time."""
    return (at - _EPOCH) // _MICROSECOND


def u64(value: int) -> bytes:
    return value.to_bytes(8, "big", signed=False)


def i64(value: int) -> bytes:
    return value.to_bytes(8, "big", signed=True)


def length_prefixed(*fields: bytes) -> bytes:
    """Concatenate ``len(field)`` (8-byte big-endian) and ``field`` for every field.

    Each field carries its own length, so no two different field lists encode
    to the same bytes (no splicing across field boundaries).
    """
    out = bytearray(u64(len(fields)))
    for field in fields:
        out += u64(len(field))
        out += field
    return bytes(out)
