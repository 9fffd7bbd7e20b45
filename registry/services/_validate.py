"""Request field checks. Each failure is INVALID_ARGUMENT naming the field and the fix."""

from __future__ import annotations

import re
from collections.abc import Mapping

from mesh.did import DID
from mesh.ed25519 import check_public_key
from mesh.errors import InvalidIdentifier, WeakKeyError
from registry.status import invalid

MAX_DID_CHARS = 64
MAX_REASON_BYTES = 512
MAX_METADATA_ENTRIES = 16
MAX_METADATA_BYTES = 256
MAX_JOIN_TOKEN_CHARS = 128
MAX_KEY_HISTORY_BYTES = 256 * 1024
MAX_CSR_BYTES = 8 * 1024
MAX_AUDIENCES = 8
MAX_AUDIENCE_BYTES = 256
MAX_PAGE_SIZE = 1000
MAX_PAGE_TOKEN_CHARS = 512
NONCE_BYTES = 32
SIGNATURE_BYTES = 64

_AGENT_NAME = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_.-]+$")
_TOKEN_ID = re.compile(r"^[0-9a-f]{32}$")
# C0 and C1 controls and DEL: they break logs and PostgreSQL text (NUL) alike.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def did(field: str, text: str) -> DID:
    if not text:
        raise invalid(field, "is required (did:mesh:<id>)")
    if len(text) > MAX_DID_CHARS:
        raise invalid(field, f"is {len(text)} characters; a did:mesh is at most {MAX_DID_CHARS}")
    try:
        return DID.parse(text)
    except InvalidIdentifier as exc:
        raise invalid(field, str(exc)) from None


def printable(field: str, text: str, max_bytes: int, *, required: bool = False) -> str:
    if required and not text:
        raise invalid(field, "is required")
    size = utf8_len(text)
    if size > max_bytes:
        raise invalid(field, f"is {size} bytes; at most {max_bytes} are allowed")
    if _CONTROL.search(text):
        raise invalid(field, "contains control characters; use printable text")
    return text


def public_key(field: str, value: bytes) -> bytes:
    if len(value) != 32:
        raise invalid(
            field, f"is {len(value)} bytes; send the raw 32-byte Ed25519 public key"
        )
    try:
        return check_public_key(value)
    except WeakKeyError as exc:
        raise invalid(field, str(exc)) from None


def exact_bytes(field: str, value: bytes, size: int, what: str) -> bytes:
    if len(value) != size:
        raise invalid(field, f"is {len(value)} bytes; {what} is exactly {size} bytes")
    return value


def csr(field: str, value: bytes) -> bytes:
    if not value:
        raise invalid(field, "is required: a PKCS#10 CSR (DER) for a P-256 key made on the agent")
    if len(value) > MAX_CSR_BYTES:
        raise invalid(field, f"is {len(value)} bytes; a CSR is at most {MAX_CSR_BYTES}")
    return value


def metadata(field: str, value: Mapping[str, str]) -> dict[str, str]:
    if len(value) > MAX_METADATA_ENTRIES:
        raise invalid(field, f"has {len(value)} entries; at most {MAX_METADATA_ENTRIES}")
    out: dict[str, str] = {}
    for key, val in value.items():
        if not key:
            raise invalid(field, "keys must not be empty")
        printable(f"{field} key {key[:40]!r}", key, MAX_METADATA_BYTES)
        printable(f"{field}[{key[:40]!r}]", val, MAX_METADATA_BYTES)
        out[key] = val
    return out


def join_token(field: str, value: str) -> str:
    if len(value) > MAX_JOIN_TOKEN_CHARS:
        raise invalid(
            field, f"is {len(value)} characters; a join token is at most {MAX_JOIN_TOKEN_CHARS}"
        )
    if value and not _TOKEN_CHARS.fullmatch(value):
        raise invalid(
            field, "has characters a join token never contains; paste the token exactly as given"
        )
    return value


def agent_name(field: str, value: str) -> str:
    if not value:
        raise invalid(field, "is required (e.g. billing/worker-3)")
    if len(value) > 128:
        raise invalid(field, f"is {len(value)} bytes; at most 128")
    if not value.isascii() or not _AGENT_NAME.fullmatch(value):
        raise invalid(
            field,
            "must be [A-Za-z0-9._-] segments separated by '/' (e.g. billing/worker-3)",
        )
    if any(segment in (".", "..") for segment in value.split("/")):
        raise invalid(field, "segments '.' and '..' are not allowed")
    return value


def token_id(field: str, value: str) -> str:
    if not value:
        raise invalid(field, "is required (the id from CreateJoinToken or ListJoinTokens)")
    if not _TOKEN_ID.fullmatch(value):
        raise invalid(field, "is not a join token id (32 lowercase hex characters)")
    return value


def audience(field: str, values: list[str]) -> list[str]:
    if not values:
        raise invalid(field, "needs at least one audience")
    if len(values) > MAX_AUDIENCES:
        raise invalid(field, f"has {len(values)} entries; at most {MAX_AUDIENCES}")
    for value in values:
        printable(field, value, MAX_AUDIENCE_BYTES, required=True)
    return list(values)


def page_size(field: str, value: int) -> int:
    if value == 0:
        return 100
    if value > MAX_PAGE_SIZE:
        raise invalid(field, f"is {value}; it must be 1..{MAX_PAGE_SIZE} (0 means 100)")
    return value


def page_token(field: str, value: str) -> str | None:
    if not value:
        return None
    if len(value) > MAX_PAGE_TOKEN_CHARS or _CONTROL.search(value):
        raise invalid(field, "is not a page token from a previous ListAgents response")
    return value
