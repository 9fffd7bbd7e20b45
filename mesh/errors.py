"""One base error for everything trustmesh raises on the agent side.

Every message says what went wrong *and* what a person can do about it, so a
CLI can print ``str(error)`` and stop.
"""

from __future__ import annotations


class MeshError(Exception):
    """Base of every trustmesh error. ``str()`` is a complete, actionable message."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)


class InvalidIdentifier(MeshError):
    """A DID, SPIFFE ID or trust domain is malformed."""


class WeakKeyError(MeshError):
    """An Ed25519 public key is non-canonical or of small order: it must not be accepted."""


class KeyFileError(MeshError):
    """A key file could not be written or read safely."""


class KeyHistoryError(MeshError):
    """A key history (inception + rotations) does not verify."""
