"""Opaque keyset page tokens: the (created_at, did) of the last row served."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from registry.store.errors import InvalidArgument

MAX_PAGE_SIZE = 1000


def page_size(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAGE_SIZE:
        raise InvalidArgument(f"page_size must be an integer from 1 to {MAX_PAGE_SIZE}")
    return value


def encode(created_at: datetime, key: str) -> str:
    raw = json.dumps({"t": created_at.isoformat(), "k": key}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(token: str) -> tuple[datetime, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        doc = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        created_at = datetime.fromisoformat(doc["t"])
        key = doc["k"]
        if created_at.tzinfo is None or not isinstance(key, str):
            raise ValueError("bad fields")
    except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error) as error:
        raise InvalidArgument(
            "page token is malformed", hint="pass back the next_page_token of the previous page"
        ) from error
    return created_at, key
