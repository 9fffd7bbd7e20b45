"""The two kinds of key history entry, their signed bytes, hashes and JSON form.

Signed bytes (see docs/identity.md) are :func:`length_prefixed` field lists:

* inception: ``tag, did, u64(0), public_key, i64(at_us)``
* rotation:  ``tag, did, u64(index), previous_hash, previous_public_key,
  next_public_key, i64(at_us)``, signed by the previous key *and* the next key.

The hash an entry is chained by covers its signed bytes and its signatures.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mesh.keyhistory._codec import (
    b64u_decode,
    b64u_encode,
    fail,
    format_time,
    i64,
    length_prefixed,
    micros,
    parse_time,
    u64,
)

INCEPTION_TAG = b"trustmesh/key-history/v1/inception"
ROTATION_TAG = b"trustmesh/key-history/v1/rotation"
ENTRY_HASH_TAG = b"trustmesh/key-history/v1/entry-hash"


def inception_signing_input(did: str, public_key: bytes, at: datetime) -> bytes:
    return length_prefixed(INCEPTION_TAG, did.encode("utf-8"), u64(0), public_key, i64(micros(at)))


def rotation_signing_input(
    did: str,
    index: int,
    previous_hash: bytes,
    previous_public_key: bytes,
    public_key: bytes,
    at: datetime,
) -> bytes:
    return length_prefixed(
        ROTATION_TAG,
        did.encode("utf-8"),
        u64(index),
        previous_hash,
        previous_public_key,
        public_key,
        i64(micros(at)),
    )


@dataclass(frozen=True, slots=True)
class Inception:
    """Entry 0: the key the DID is derived from, signed by itself."""

    did: str
    public_key: bytes
    kid: str
    at: datetime
    signature: bytes

    @property
    def index(self) -> int:
        return 0

    def signing_input(self) -> bytes:
        return inception_signing_input(self.did, self.public_key, self.at)

    def digest(self) -> bytes:
        return hashlib.sha256(
            length_prefixed(ENTRY_HASH_TAG, self.signing_input(), self.signature)
        ).digest()

    def to_json_obj(self) -> dict[str, Any]:
        return {
            "type": "inception",
            "index": 0,
            "did": self.did,
            "public_key": b64u_encode(self.public_key),
            "kid": self.kid,
            "at": format_time(self.at),
            "signature": b64u_encode(self.signature),
        }


@dataclass(frozen=True, slots=True)
class Rotation:
    """Entry ``index`` >= 1: hands the identity from the previous key to ``public_key``."""

    index: int
    previous_hash: bytes
    previous_kid: str
    public_key: bytes
    kid: str
    at: datetime
    signature_current: bytes
    signature_next: bytes

    def signing_input(self, did: str, previous_public_key: bytes) -> bytes:
        return rotation_signing_input(
            did, self.index, self.previous_hash, previous_public_key, self.public_key, self.at
        )

    def digest(self, did: str, previous_public_key: bytes) -> bytes:
        signed = self.signing_input(did, previous_public_key)
        return hashlib.sha256(
            length_prefixed(ENTRY_HASH_TAG, signed, self.signature_current, self.signature_next)
        ).digest()

    def to_json_obj(self) -> dict[str, Any]:
        return {
            "type": "rotation",
            "index": self.index,
            "previous_hash": b64u_encode(self.previous_hash),
            "previous_kid": self.previous_kid,
            "public_key": b64u_encode(self.public_key),
            "kid": self.kid,
            "at": format_time(self.at),
            "signature_current": b64u_encode(self.signature_current),
            "signature_next": b64u_encode(self.signature_next),
        }


Entry = Inception | Rotation

_INCEPTION_FIELDS = frozenset({"type", "index", "did", "public_key", "kid", "at", "signature"})
_ROTATION_FIELDS = frozenset(
    {
        "type",
        "index",
        "previous_hash",
        "previous_kid",
        "public_key",
        "kid",
        "at",
        "signature_current",
        "signature_next",
    }
)


def entry_from_json_obj(position: int, obj: object) -> Entry:
    """Parse the JSON shape of the entry at ``position``; signatures are checked elsewhere."""
    if not isinstance(obj, dict):
        raise fail(position, "shape", f"an entry is a JSON object, got {type(obj).__name__}")
    kind = obj.get("type")
    expected = {"inception": _INCEPTION_FIELDS, "rotation": _ROTATION_FIELDS}.get(str(kind))
    if expected is None:
        raise fail(position, "shape", f"unknown entry type {str(kind)[:40]!r}")
    if position == 0 and kind != "inception":
        raise fail(0, "inception-first", "the first entry must be the inception entry")
    if position > 0 and kind != "rotation":
        raise fail(position, "single-inception", "only the first entry may be an inception")
    keys = set(obj)
    if keys != expected:
        missing, extra = sorted(expected - keys), sorted(keys - expected)
        raise fail(position, "shape", f"missing fields {missing}, unexpected fields {extra}")
    index = obj["index"]
    if type(index) is not int or index != position:
        raise fail(position, "index", f"index is {index!r}, expected {position}")
    fields = _Fields(position, obj)
    if kind == "inception":
        return Inception(
            did=fields.text("did"),
            public_key=fields.b64("public_key"),
            kid=fields.text("kid"),
            at=fields.time("at"),
            signature=fields.b64("signature"),
        )
    return Rotation(
        index=index,
        previous_hash=fields.b64("previous_hash"),
        previous_kid=fields.text("previous_kid"),
        public_key=fields.b64("public_key"),
        kid=fields.text("kid"),
        at=fields.time("at"),
        signature_current=fields.b64("signature_current"),
        signature_next=fields.b64("signature_next"),
    )


class _Fields:
    def __init__(self, position: int, obj: dict[str, Any]) -> None:
        self._position = position
        self._obj = obj

    def text(self, name: str) -> str:
        value = self._obj[name]
        if not isinstance(value, str):
            raise fail(self._position, "shape", f"{name} is a string, got {type(value).__name__}")
        return value

    def b64(self, name: str) -> bytes:
        value = self.text(name)
        try:
            return b64u_decode(value)
        except ValueError as exc:
            raise fail(self._position, "encoding", f"{name}: {exc}") from None

    def time(self, name: str) -> datetime:
        value = self.text(name)
        try:
            return parse_time(value)
        except ValueError as exc:
            raise fail(self._position, "encoding", f"{name} {value[:40]!r}: {exc}") from None
