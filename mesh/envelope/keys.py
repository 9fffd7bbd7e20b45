"""Which public key may sign for a sender: the key resolver a :class:`Verifier` consults.

A resolver answers one question — the public key of ``sender`` with id ``kid``
valid at instant ``at`` — or refuses with :class:`UnknownKey` (never heard of
it) or :class:`RevokedKey` (known, but revoked, compromised, or rotated out and
past its grace period at ``at``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Protocol

from mesh.did import DID
from mesh.ed25519 import check_public_key
from mesh.envelope.errors import KeyMismatch, RevokedKey, UnknownKey
from mesh.errors import KeyHistoryError
from mesh.keyhistory import KeyHistory, KeyStatus
from mesh.keys import key_id

DEFAULT_ROTATION_GRACE = timedelta(minutes=5)


class KeyResolver(Protocol):
    def resolve(self, sender: str, kid: str, at: datetime) -> bytes:
        """The 32-byte public key of ``sender``'s key ``kid`` valid at ``at``.

        Raise :class:`UnknownKey` or :class:`RevokedKey` when there is none.
        """
        ...


class StaticKeys:
    """A fixed table of trusted keys per sender, e.g. from ``--public-key`` on the command line.

    Every key is checked once, here: it must be an acceptable Ed25519 key
    (:func:`mesh.ed25519.check_public_key`), it is indexed by its own RFC 7638
    thumbprint (so a message's ``kid`` can only select the key it names), and
    with ``inception=True`` each sender DID must be the one derived from its key.
    A static table knows nothing of revocation: use a history-backed resolver
    for keys that rotate.
    """

    __slots__ = ("_keys", "_senders")

    def __init__(self, keys: Mapping[str, Iterable[bytes]], *, inception: bool = False) -> None:
        self._keys: dict[tuple[str, str], bytes] = {}
        self._senders: set[str] = set()
        for sender, public_keys in keys.items():
            did = DID.parse(sender)
            for public_key in public_keys:
                check_public_key(public_key)
                if inception and not did.matches_key(public_key):
                    raise KeyMismatch(
                        f"{sender} was not derived from the key {key_id(public_key)}",
                        hint="an inception key founds exactly one DID: did:mesh:<base58 of "
                        "SHA-256(key)[:20]>; for a rotated key pass inception=False",
                    )
                self._keys[(str(did), key_id(public_key))] = bytes(public_key)
            self._senders.add(str(did))

    @classmethod
    def inception(cls, *public_keys: bytes) -> StaticKeys:
        """Trust each key for the one DID it founds (its sender is derived, not claimed)."""
        table: dict[str, list[bytes]] = {}
        for public_key in public_keys:
            table.setdefault(str(DID.from_public_key(public_key)), []).append(public_key)
        return cls(table, inception=True)

    def resolve(self, sender: str, kid: str, at: datetime) -> bytes:
        public_key = self._keys.get((sender, kid))
        if public_key is not None:
            return public_key
        if sender in self._senders:
            raise UnknownKey(
                f"{sender} has no trusted key with kid {kid}",
                hint="the message was signed with another key (rotated?): configure that key",
            )
        raise UnknownKey(
            f"no keys are trusted for sender {sender}",
            hint="configure the sender's public key; its inception key founds its DID",
        )


class HistoryKeys:
    """Keys from verified key histories (:mod:`mesh.keyhistory`), one history per sender DID.

    The key ``kid`` is accepted for a message issued at ``at`` when the history
    says it was the sender's key then: current, or rotated out no more than
    ``grace`` before ``at`` (so messages signed just after a rotation, by a
    replica that has not reloaded its key, still pass). Past the grace it is
    :class:`RevokedKey`. An issued-at before the key was introduced, or a kid
    the history never had, is :class:`UnknownKey`.

    Compromised keys and revoked agents are not in the history (the registry
    knows them): declare them with :meth:`revoke_key` / :meth:`revoke_sender`.
    A compromised key is refused for every message, whatever its issued-at,
    because whoever holds it can choose that time.

    Because issued-at is checked against the verifier's time window too (rule
    5), a rotated-out key stops signing anything acceptable at most
    ``grace + max_lifetime + max_skew`` after its rotation.
    """

    __slots__ = ("_grace", "_histories", "_lock", "_revoked_kids", "_revoked_senders")

    def __init__(
        self, histories: Iterable[KeyHistory] = (), *, grace: timedelta = DEFAULT_ROTATION_GRACE
    ) -> None:
        if grace < timedelta(0):
            raise ValueError("grace must not be negative")
        self._grace = grace
        self._histories: dict[str, KeyHistory] = {}
        self._revoked_kids: set[str] = set()
        self._revoked_senders: set[str] = set()
        self._lock = threading.Lock()
        for history in histories:
            self.update(history)

    def update(self, history: KeyHistory) -> None:
        """Add a sender's history, or replace it with a longer one that extends it.

        A history that does not extend the one held (a fork: someone rotated
        the identity twice from one point) is refused with ``KeyHistoryError``.
        """
        sender = str(history.did)
        with self._lock:
            held = self._histories.get(sender)
            if held is not None and not held.is_prefix_of(history):
                if history.is_prefix_of(held):
                    return  # older than what we hold: keep ours
                raise KeyHistoryError(
                    f"the key history of {sender} does not extend the one already trusted",
                    hint="two different rotations from one key: treat the identity as compromised",
                )
            self._histories[sender] = history

    def revoke_key(self, kid: str) -> None:
        """Refuse every message signed with ``kid`` (a compromised key)."""
        with self._lock:
            self._revoked_kids.add(kid)

    def revoke_sender(self, sender: str) -> None:
        """Refuse every message from ``sender`` (a revoked or terminated agent)."""
        with self._lock:
            self._revoked_senders.add(sender)

    def resolve(self, sender: str, kid: str, at: datetime) -> bytes:
        history = self._histories.get(sender)
        if history is None:
            raise UnknownKey(
                f"no key history is known for sender {sender}",
                hint="fetch the sender's key history from the registry (or its agent directory)",
            )
        if sender in self._revoked_senders:
            raise RevokedKey(f"{sender} has been revoked", hint="its messages are never accepted")
        if kid in self._revoked_kids:
            raise RevokedKey(
                f"key {kid} of {sender} is revoked as compromised",
                hint="the sender must sign with its new key",
            )
        status = history.status_at(kid, at, self._grace)
        if status is KeyStatus.UNKNOWN:
            raise UnknownKey(
                f"{sender} had no key {kid} at {at.isoformat()}",
                hint="the key is not in the history, or the message claims a time before the key "
                "existed; fetch the sender's latest key history",
            )
        period = history.period_for(kid)
        if status is KeyStatus.ROTATED or period is None:
            rotated = period.rotated_at.isoformat() if period and period.rotated_at else "?"
            raise RevokedKey(
                f"key {kid} of {sender} was rotated out at {rotated}, more than "
                f"{self._grace} before the message was issued ({at.isoformat()})",
                hint="the sender must sign with its current key",
            )
        return period.public_key
