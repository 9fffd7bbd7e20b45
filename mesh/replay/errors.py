"""Errors of replay guards."""

from __future__ import annotations

from mesh.errors import MeshError


class ReplayGuardFull(MeshError):
    """The guard holds as many unexpired nonces as it may: it refuses new messages.

    Refusing is the safe choice: forgetting an unexpired nonce to make room
    would let that message be replayed. The condition clears by itself as
    remembered messages expire; it means the guard is sized below the traffic.
    """


class ReplayGuardUnavailable(MeshError):
    """A shared replay guard's store (Redis) cannot be reached: messages are refused.

    Refusing is the safe choice, as for a full guard: a message whose nonce
    could not be recorded could be replayed to another process of the service.
    """
