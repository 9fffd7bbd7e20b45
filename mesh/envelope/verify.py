"""The verifier: one ordered checklist, one named error per rule (docs/messages.md).

1. shape      — a well-formed envelope or JWS within the size limits   MalformedMessage
2. key        — the sender's key ``kid`` is valid at issued-at          UnknownKey, RevokedKey
3. signature  — strict Ed25519 over the signed bytes                    BadSignature
4. audience   — addressed to us                                         WrongAudience
5. time       — lifetime bounded; issued-at and expires-at within skew  LifetimeTooLong,
                                                                        NotYetValid, Expired
6. replay     — this sender's nonce not accepted before in its window   Replayed

The order matters: nothing unauthenticated reaches the replay guard (so a
forger cannot fill it or burn a victim's nonces), and a message is only
remembered once every other rule has passed. Decoding happens before: the
signed bytes are computed when the message is built, so this path does no
encoding, no JSON and no allocation beyond the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Final

from mesh.ed25519 import verify_strict
from mesh.envelope.errors import (
    BadSignature,
    Expired,
    LifetimeTooLong,
    MalformedMessage,
    NotYetValid,
    Replayed,
    WrongAudience,
)
from mesh.envelope.keys import KeyResolver
from mesh.envelope.models import MAX_PAYLOAD_BYTES, Envelope, JwsMessage, VerifiedMessage, utc
from mesh.replay import MemoryReplayGuard, ReplayGuard

DEFAULT_MAX_SKEW = timedelta(seconds=60)
DEFAULT_MAX_LIFETIME = timedelta(hours=1)


class _AnyAudience:
    def __repr__(self) -> str:
        return "ANY_AUDIENCE"


ANY_AUDIENCE: Final = _AnyAudience()
"""Pass as ``audience`` to skip the audience rule (inspection tools only, never services)."""


def _whole_seconds(value: timedelta, name: str) -> int:
    seconds = value.total_seconds()
    if seconds < 0 or seconds != int(seconds):
        raise ValueError(f"{name} must be a non-negative whole number of seconds")
    return int(seconds)


class Verifier:
    """Checks signed messages for one recipient.

    ``audience`` is the audience (or audiences) this recipient answers to,
    ``keys`` says which key may sign for a sender at a given time, and
    ``replay`` remembers nonces (an in-memory guard on this verifier's clock if
    none is given; share one guard between all verifiers of a recipient).
    """

    __slots__ = (
        "_any_audience",
        "_audiences",
        "_clock",
        "_keys",
        "_max_lifetime",
        "_max_payload",
        "_replay",
        "_skew",
    )

    def __init__(
        self,
        keys: KeyResolver,
        *,
        audience: str | Iterable[str] | _AnyAudience,
        max_skew: timedelta = DEFAULT_MAX_SKEW,
        max_lifetime: timedelta = DEFAULT_MAX_LIFETIME,
        replay: ReplayGuard | None = None,
        max_payload: int = MAX_PAYLOAD_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._any_audience = audience is ANY_AUDIENCE
        if isinstance(audience, _AnyAudience):
            self._audiences: frozenset[str] = frozenset()
        elif isinstance(audience, str):
            self._audiences = frozenset((audience,))
        else:
            self._audiences = frozenset(audience)
        if not self._any_audience and not self._audiences:
            raise ValueError("give at least one audience (or ANY_AUDIENCE for inspection tools)")
        self._skew = _whole_seconds(max_skew, "max_skew")
        self._max_lifetime = _whole_seconds(max_lifetime, "max_lifetime")
        if self._max_lifetime == 0:
            raise ValueError("max_lifetime must be positive")
        self._max_payload = max_payload
        self._clock = clock
        self._replay: ReplayGuard = replay if replay is not None else MemoryReplayGuard(clock=clock)

    def verify(
        self, message: Envelope | JwsMessage, now: datetime | None = None
    ) -> VerifiedMessage:
        """Run the checklist; return the verified message or raise the rule that failed.

        ``now`` checks the time rule at another instant than the verifier's
        clock (the replay guard keeps its own clock).
        """
        # The rules in order. Where a rule is a cheap test, the test is made here and its
        # method only runs to name the failure: this is the hot path of every receiver.
        if type(message) is Envelope and len(message.payload) <= self._max_payload:
            form = "envelope"
        else:
            form = self._check_shape(message)
        sender, issued_at, expires_at = message.sender, message.issued_at, message.expires_at
        public_key = self._check_key(sender, message.kid, issued_at)
        self._check_signature(public_key, message.signed_bytes, message.signature)
        audience = message.audience
        if audience not in self._audiences and not self._any_audience:
            self._check_audience(audience)
        at = self._clock() if now is None else _at(now)
        skew = self._skew
        if (
            expires_at - issued_at > self._max_lifetime
            or at < issued_at - skew
            or at >= expires_at + skew
        ):
            self._check_time(issued_at, expires_at, at)
        self._check_replay(sender, message.nonce, expires_at)
        # _make skips the named tuple's Python-level __new__: this is the hot path.
        return VerifiedMessage._make(
            (
                sender,
                message.kid,
                message.payload_type,
                message.payload,
                audience,
                issued_at,
                expires_at,
                message.nonce,
                form,
            )
        )

    # 1. shape
    def _check_shape(self, message: object) -> str:
        # Field types, sizes and alphabets were checked when the message was built.
        if isinstance(message, Envelope):
            form = "envelope"
        elif isinstance(message, JwsMessage):
            form = "jws"
        else:
            raise MalformedMessage(
                f"expected an Envelope or a JWS message, got {type(message).__name__}",
                hint="parse the wire form first: Envelope.from_json / from_bytes, or verify_jws",
            )
        if len(message.payload) > self._max_payload:
            raise MalformedMessage(
                f"the payload is {len(message.payload)} bytes; this verifier accepts at most "
                f"{self._max_payload}",
            )
        return form

    # 2. key status at issued-at
    def _check_key(self, sender: str, kid: str, issued_at: int) -> bytes:
        # UnknownKey / RevokedKey come from the resolver, which knows the history.
        return self._keys.resolve(sender, kid, utc(issued_at))

    # 3. signature
    @staticmethod
    def _check_signature(public_key: bytes, signed: bytes, signature: bytes) -> None:
        if not verify_strict(public_key, signed, signature):
            raise BadSignature(
                "the signature does not verify with the sender's key",
                hint="the message was altered, or signed by another key than its kid names",
            )

    # 4. audience
    def _check_audience(self, audience: str) -> None:
        if audience not in self._audiences and not self._any_audience:
            raise WrongAudience(
                f"the message is addressed to {audience!r}, not to "
                f"{' or '.join(repr(a) for a in sorted(self._audiences))}",
                hint="the sender must address the message to this recipient",
            )

    # 5. time window
    def _check_time(self, issued_at: int, expires_at: int, now: float) -> None:
        if expires_at - issued_at > self._max_lifetime:
            raise LifetimeTooLong(
                f"the message is valid for {expires_at - issued_at} s; at most "
                f"{self._max_lifetime} s is accepted",
                hint="sign with a shorter ttl",
            )
        if now < issued_at - self._skew:
            raise NotYetValid(
                f"the message was issued at {issued_at}, {issued_at - now:.0f} s in the future "
                f"(allowed skew {self._skew} s)",
                hint="check the sender's and the receiver's clocks (NTP)",
            )
        if now >= expires_at + self._skew:
            raise Expired(
                f"the message expired at {expires_at}, {now - expires_at:.0f} s ago "
                f"(allowed skew {self._skew} s)",
                hint="ask the sender for a fresh message; check both clocks if this repeats",
            )

    # 6. replay
    def _check_replay(self, sender: str, nonce: bytes, expires_at: int) -> None:
        # Remember the nonce for as long as step 5 could still accept the message.
        until = utc(expires_at + self._skew)
        if not self._replay.check_and_remember(sender, nonce, until):
            raise Replayed(
                f"{sender} already sent a message with this nonce; it was accepted once",
                hint="a sender must use a fresh random nonce for every message",
            )


def _at(now: datetime) -> float:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware, e.g. datetime.now(UTC)")
    return now.timestamp()
