"""Character rules shared by trust domain names and SPIFFE ID paths (SPIFFE-ID spec 2.1, 2.2)."""

from __future__ import annotations

import string

SCHEME = "spiffe"
SCHEME_PREFIX = SCHEME + "://"
MAX_ID_BYTES = 2048
MAX_TRUST_DOMAIN_BYTES = 255

TRUST_DOMAIN_CHARS = frozenset(string.ascii_lowercase + string.digits + ".-_")
PATH_SEGMENT_CHARS = frozenset(string.ascii_letters + string.digits + ".-_")


def shown(text: str, limit: int = 80) -> str:
    """A short, quoted rendering of untrusted input for error messages."""
    return repr(text if len(text) <= limit else text[:limit] + "...")
