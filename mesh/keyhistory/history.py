"""A verified key history: the inception key, then every rotation, each signed by both keys.

A :class:`KeyHistory` object only ever exists verified: it is built by
:meth:`KeyHistory.incept`, :meth:`KeyHistory.rotate` or :meth:`KeyHistory.from_json`
(which checks every rule from the inception key alone), and it is immutable.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from mesh.did import DID
from mesh.ed25519 import is_acceptable_public_key, verify_strict
from mesh.errors import InvalidIdentifier, KeyHistoryError
from mesh.keyhistory._codec import check_aware, fail, format_time
from mesh.keyhistory.entry import (
    Entry,
    Inception,
    Rotation,
    entry_from_json_obj,
    inception_signing_input,
    rotation_signing_input,
)
from mesh.keyhistory.period import KeyPeriod, KeyStatus
from mesh.keys.identity_key import IdentityKey, key_id

FORMAT = "trustmesh-key-history/v1"
# Bounds on untrusted input, far above any real history (monthly rotation for centuries).
MAX_ENTRIES = 10_000
MAX_JSON_CHARS = 8 * 1024 * 1024


class KeyHistory:
    """The signed log of an agent's keys under one DID. Immutable; always verified."""

    __slots__ = ("_did", "_entries", "_head", "_periods")

    _did: DID
    _entries: tuple[Entry, ...]
    _periods: tuple[KeyPeriod, ...]
    _head: bytes

    def __init__(self, entries: Iterable[Entry]) -> None:
        """Verify ``entries`` (inception first) and hold them; raise :class:`KeyHistoryError`."""
        self._entries = tuple(entries)
        self._did, self._periods, self._head = _verify(self._entries)

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def incept(cls, key: IdentityKey, at: datetime) -> KeyHistory:
        """Start the history of a new identity whose DID derives from ``key``."""
        at = check_aware(at, "the inception time")
        did = str(key.did())
        signature = key.sign(inception_signing_input(did, key.public_key, at))
        return cls([Inception(did, key.public_key, key.kid, at, signature)])

    def rotate(self, current: IdentityKey, next: IdentityKey, at: datetime) -> KeyHistory:
        """A new history with one more entry handing the identity from ``current`` to ``next``.

        ``current`` must be the history's current key, ``next`` a key never used
        in it, and ``at`` later than the last entry.
        """
        at = check_aware(at, "the rotation time")
        index = len(self._entries)
        head = self.current
        if current.kid != head.kid:
            raise fail(
                index,
                "current-key",
                f"the rotation is signed by kid {current.kid}, but the current key is {head.kid}",
                hint="load the agent's current identity key before rotating",
            )
        if self.period_for(next.kid) is not None:
            raise fail(
                index,
                "key-reuse",
                f"kid {next.kid} was already used in this history",
                hint="generate a fresh key for every rotation",
            )
        if at <= head.valid_from:
            raise fail(
                index,
                "time-order",
                f"rotation time {format_time(at)} is not after {format_time(head.valid_from)}",
                hint="check the system clock",
            )
        signed = rotation_signing_input(
            str(self._did), index, self._head, head.public_key, next.public_key, at
        )
        entry = Rotation(
            index=index,
            previous_hash=self._head,
            previous_kid=head.kid,
            public_key=next.public_key,
            kid=next.kid,
            at=at,
            signature_current=current.sign(signed),
            signature_next=next.sign(signed),
        )
        return KeyHistory((*self._entries, entry))

    # -- reading ----------------------------------------------------------------------------

    @property
    def did(self) -> DID:
        """The DID, derived from the inception key; ``str(history.did)`` is ``did:mesh:...``."""
        return self._did

    @property
    def entries(self) -> tuple[Entry, ...]:
        return self._entries

    @property
    def periods(self) -> tuple[KeyPeriod, ...]:
        """Every key's tenure, oldest first; the last one is the current key."""
        return self._periods

    @property
    def inception(self) -> KeyPeriod:
        return self._periods[0]

    @property
    def current(self) -> KeyPeriod:
        """The current key (``.public_key``, ``.kid``) and since when it is valid."""
        return self._periods[-1]

    @property
    def head_hash(self) -> bytes:
        """The hash of the last entry; the next rotation chains to it."""
        return self._head

    def period_for(self, kid: str) -> KeyPeriod | None:
        """The period of the key ``kid``, or None when the history never had it."""
        for period in self._periods:
            if period.kid == kid:
                return period
        return None

    def active_at(self, at: datetime) -> KeyPeriod | None:
        """The period of the key that was current at ``at`` (None before inception)."""
        at = check_aware(at, "the time")
        for period in reversed(self._periods):
            if period.valid_from <= at:
                return period
        return None

    def key_at(self, kid: str, at: datetime) -> KeyPeriod:
        """The period of ``kid``, which must have been the current key at ``at``."""
        at = check_aware(at, "the time")
        period = self.period_for(kid)
        if period is None:
            raise KeyHistoryError(
                f"kid {kid[:64]!r} is not a key of {self._did}",
                hint="fetch the agent's latest key history",
            )
        if not period.covers(at):
            until = format_time(period.rotated_at) if period.rotated_at else "now"
            raise KeyHistoryError(
                f"kid {kid} of {self._did} was not its current key at {format_time(at)} "
                f"(it was current from {format_time(period.valid_from)} until {until})",
            )
        return period

    def status_at(self, kid: str, when: datetime, grace: timedelta) -> KeyStatus:
        """The status of ``kid`` for a signature made at ``when``.

        CURRENT: never rotated (and ``when`` is not before it was introduced).
        ROTATED_IN_GRACE: rotated, and ``when`` <= rotation time + ``grace``.
        ROTATED: rotated, and ``when`` is past rotation time + ``grace``.
        UNKNOWN: not a key of this history, or ``when`` is before it was introduced.
        """
        when = check_aware(when, "the time")
        if grace < timedelta(0):
            raise ValueError("grace must not be negative")
        period = self.period_for(kid)
        if period is None or when < period.valid_from:
            return KeyStatus.UNKNOWN
        if period.rotated_at is None:
            return KeyStatus.CURRENT
        if when <= period.rotated_at + grace:
            return KeyStatus.ROTATED_IN_GRACE
        return KeyStatus.ROTATED

    def is_prefix_of(self, other: KeyHistory) -> bool:
        """True when ``other`` is this history extended by zero or more rotations."""
        n = len(self._entries)
        return len(other._entries) >= n and other._entries[:n] == self._entries

    # -- JSON -------------------------------------------------------------------------------

    def to_json(self) -> str:
        document = {
            "format": FORMAT,
            "did": str(self._did),
            "entries": [entry.to_json_obj() for entry in self._entries],
        }
        return json.dumps(document, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> KeyHistory:
        """Parse and fully verify a history; raise :class:`KeyHistoryError` naming what failed."""
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise fail(None, "encoding", "the key history is not UTF-8 text") from None
        if not isinstance(text, str):
            raise fail(None, "shape", f"a key history is JSON text, got {type(text).__name__}")
        if len(text) > MAX_JSON_CHARS:
            raise fail(None, "size", f"the key history is over {MAX_JSON_CHARS} characters")
        try:
            document: Any = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise fail(None, "json", f"not valid JSON: {exc}") from None
        if not isinstance(document, dict):
            raise fail(None, "shape", "a key history is a JSON object")
        if set(document) != {"format", "did", "entries"}:
            got = sorted(str(k)[:40] for k in document)[:10]
            raise fail(None, "shape", f"expected fields format, did, entries; got {got}")
        if document["format"] != FORMAT:
            raise fail(
                None, "format", f"format is {str(document['format'])[:60]!r}, expected {FORMAT!r}"
            )
        entries = document["entries"]
        if not isinstance(entries, list) or not entries:
            raise fail(None, "shape", "entries is a non-empty list, inception first")
        if len(entries) > MAX_ENTRIES:
            raise fail(None, "size", f"more than {MAX_ENTRIES} entries")
        history = cls(entry_from_json_obj(i, obj) for i, obj in enumerate(entries))
        if document["did"] != str(history.did):
            raise fail(None, "did", "the document's did differs from the inception entry's did")
        return history

    # -- plumbing ---------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyHistory):
            return NotImplemented
        return self._entries == other._entries

    def __hash__(self) -> int:
        return hash(self._head)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return (
            f"KeyHistory(did={str(self._did)!r}, entries={len(self._entries)}, "
            f"current={self.current.kid!r})"
        )


def _check_key(index: int, public_key: bytes, kid: str) -> None:
    if not is_acceptable_public_key(public_key):
        raise fail(
            index,
            "weak-key",
            "the public key is not a 32-byte canonical Ed25519 key of prime order",
            hint="such keys are never accepted; generate a fresh key",
        )
    if key_id(public_key) != kid:
        raise fail(index, "kid", f"kid {kid[:64]!r} is not the RFC 7638 thumbprint of the key")


def _verify(entries: Sequence[Entry]) -> tuple[DID, tuple[KeyPeriod, ...], bytes]:
    """Check every rule from the inception key alone; return the DID, periods and head hash."""
    if not entries:
        raise fail(None, "shape", "a key history has at least its inception entry")
    first = entries[0]
    if not isinstance(first, Inception):
        raise fail(0, "inception-first", "the first entry must be the inception entry")
    _check_key(0, first.public_key, first.kid)
    try:
        did = DID.parse(first.did)
    except InvalidIdentifier as exc:
        raise fail(0, "did", str(exc)) from None
    if not did.matches_key(first.public_key):
        raise fail(0, "did", f"{first.did} is not derived from the inception key")
    if not verify_strict(first.public_key, first.signing_input(), first.signature):
        raise fail(0, "signature", "the inception self-signature does not verify")

    did_text = str(did)
    starts: list[tuple[int, str, bytes, datetime]] = [(0, first.kid, first.public_key, first.at)]
    seen = {first.public_key}
    head = first.digest()
    previous_key, previous_kid, previous_at = first.public_key, first.kid, first.at
    for index, entry in enumerate(entries[1:], start=1):
        if not isinstance(entry, Rotation):
            raise fail(index, "single-inception", "only the first entry may be an inception")
        if entry.index != index:
            raise fail(index, "index", f"index is {entry.index}, expected {index}")
        if entry.previous_kid != previous_kid:
            raise fail(index, "previous-kid", f"previous_kid is not {previous_kid}")
        if entry.previous_hash != head:
            raise fail(index, "chain", "previous_hash is not the hash of the previous entry")
        _check_key(index, entry.public_key, entry.kid)
        if entry.public_key in seen:
            raise fail(index, "key-reuse", f"kid {entry.kid} was already used in this history")
        if entry.at <= previous_at:
            raise fail(
                index,
                "time-order",
                f"at {format_time(entry.at)} is not after {format_time(previous_at)}",
            )
        signed = entry.signing_input(did_text, previous_key)
        if not verify_strict(previous_key, signed, entry.signature_current):
            raise fail(index, "signature-current", "the signature by the previous key fails")
        if not verify_strict(entry.public_key, signed, entry.signature_next):
            raise fail(index, "signature-next", "the signature by the next key fails")
        seen.add(entry.public_key)
        head = entry.digest(did_text, previous_key)
        starts.append((index, entry.kid, entry.public_key, entry.at))
        previous_key, previous_kid, previous_at = entry.public_key, entry.kid, entry.at

    periods = tuple(
        KeyPeriod(
            index=index,
            kid=kid,
            public_key=public_key,
            valid_from=at,
            rotated_at=starts[index + 1][3] if index + 1 < len(starts) else None,
        )
        for index, kid, public_key, at in starts
    )
    return did, periods, head
