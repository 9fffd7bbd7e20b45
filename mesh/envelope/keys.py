"""Which public key may sign for a sender: the key resolver a :class:`Verifier` consults.

A resolver answers one question — the public key of ``sender`` with id ``kid``
valid at instant ``at`` — or refuses with :class:`UnknownKey` (never heard of
it) or :class:`RevokedKey` (known, but revoked, compromised, or rotated out and
past its grace period at ``at``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Protocol

from mesh.did import DID
from mesh.ed25519 import check_public_key
from mesh.envelope.errors import KeyMismatch, UnknownKey
from mesh.keys import key_id


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
            hint="configure the sender's public key (its inception key founds its DID)",
        )
