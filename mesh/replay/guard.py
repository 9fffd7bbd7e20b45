"""What every replay guard does, whatever it stores nonces in."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class ReplayGuard(Protocol):
    def check_and_remember(self, sender: str, nonce: bytes, expires_at: datetime) -> bool:
        """Remember ``(sender, nonce)`` until ``expires_at``; False if it is remembered already.

        Must be atomic: of any number of concurrent calls with the same sender
        and nonce, at most one returns True while the first is remembered (a
        shared store does this with one "set if absent, with expiry" operation,
        e.g. Redis ``SET key 1 NX PXAT <ms>``). ``expires_at`` is the last
        instant at which the verifier could still accept the message (its
        expiry plus the allowed clock skew); the nonce may be forgotten after
        it. A guard that cannot remember a new nonce must raise (see
        :class:`mesh.replay.ReplayGuardFull`), never return True without
        remembering.
        """
        ...
