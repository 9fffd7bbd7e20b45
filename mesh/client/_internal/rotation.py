"""An identity key rotation in the agent directory, safe against a crash at any point.

1. **prepare**: a fresh key and the history extended by a rotation entry dated
   ``at`` (a whole second slightly in the future) are written beside the
   current ones: ``identity.key.next`` and ``key-history.next.json``. The
   current key and history are untouched, so a crash here changes nothing.
2. **submit** (the caller): ``KeyService.RotateKey`` with the new history.
   The registry's answer is idempotent, so a lost answer is retried as is.
3. **commit**: the new history, then the key, replace the current ones
   (:func:`mesh.keys.save_identity`; a crash between the two is finished by
   :func:`mesh.keys.load_identity`), and the pending history is removed.

A refusal by the registry abandons the pending files. A pending rotation
found later (a crash after step 1) is resumed if the registry already holds
it, resubmitted if its time has not passed yet, and otherwise abandoned and
made afresh (a rotation dated in the past would disown what the old key
signed since).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mesh.agentdir import AgentDir
from mesh.errors import KeyFileError, KeyHistoryError, MeshError
from mesh.keyhistory import KeyHistory
from mesh.keys import IdentityKey, load_identity, read_key_history, save_identity
from mesh.keys.keyfile import (
    PENDING_KEY_FILE,
    PUBLIC_MODE,
    atomic_write,
    read_private_key,
    write_private_key,
)
from mesh.rotation.schedule import next_whole_second

PENDING_HISTORY_FILE = "key-history.next.json"
# How far ahead of now a rotation is dated: the registry must accept it before that second.
DEFAULT_LEAD = timedelta(seconds=1)


@dataclass(frozen=True)
class PendingRotation:
    key: IdentityKey = field(repr=False)
    history: KeyHistory
    previous_kid: str

    @property
    def at(self) -> datetime:
        return self.history.current.valid_from


def current(directory: AgentDir, passphrase: bytes | None) -> tuple[IdentityKey, KeyHistory]:
    key = load_identity(directory.path, passphrase)
    history = read_key_history(directory.path)
    if history is None:
        raise KeyFileError(
            f"{directory.path} has no key-history.json; a key without its history cannot rotate",
            hint="restore key-history.json from a backup of this agent directory",
        )
    return key, history


def load_pending(directory: AgentDir, passphrase: bytes | None) -> PendingRotation | None:
    """The pending rotation in the directory, if a complete and consistent one is there."""
    history_path = directory.path / PENDING_HISTORY_FILE
    key_path = directory.path / PENDING_KEY_FILE
    if not history_path.exists() or not key_path.exists():
        return None
    try:
        history = KeyHistory.from_json(history_path.read_bytes())
        key = read_private_key(key_path, passphrase)
        _, stored = current(directory, passphrase)
    except (KeyHistoryError, KeyFileError, OSError):
        abandon(directory)
        return None
    if (
        history.current.kid != key.kid
        or len(history) != len(stored) + 1
        or not stored.is_prefix_of(history)
    ):
        abandon(directory)
        return None
    return PendingRotation(key, history, stored.current.kid)


def prepare(
    directory: AgentDir,
    passphrase: bytes | None,
    now: datetime,
    lead: timedelta = DEFAULT_LEAD,
) -> PendingRotation:
    """Make the next key and the extended history, and write them beside the current ones."""
    key, history = current(directory, passphrase)
    at = next_whole_second(now + lead)
    if at <= history.current.valid_from:
        at = next_whole_second(history.current.valid_from)
    next_key = IdentityKey.generate()
    extended = history.rotate(key, next_key, at)
    write_private_key(directory.path / PENDING_KEY_FILE, next_key, passphrase, overwrite=True)
    atomic_write(
        directory.path / PENDING_HISTORY_FILE,
        extended.to_json().encode("utf-8"),
        PUBLIC_MODE,
        overwrite=True,
    )
    return PendingRotation(next_key, extended, key.kid)


def commit(directory: AgentDir, pending: PendingRotation, passphrase: bytes | None) -> None:
    """Make the accepted rotation the directory's current key and history."""
    save_identity(
        directory.path, pending.key, passphrase, history=pending.history, overwrite=True
    )
    with contextlib.suppress(FileNotFoundError):
        (directory.path / PENDING_HISTORY_FILE).unlink()


def settle_seconds(pending: PendingRotation, now: datetime) -> float:
    """How long until the rotation time (0 if passed; bounded by the lead it was made with)."""
    return min(max(0.0, (pending.at - now).total_seconds()), 10.0)


def abandon(directory: AgentDir) -> None:
    """Drop a pending rotation the registry refused (or that can no longer be used)."""
    for name in (PENDING_HISTORY_FILE, PENDING_KEY_FILE):
        with contextlib.suppress(FileNotFoundError):
            (directory.path / name).unlink()


def check_accepted(pending: PendingRotation, current_kid: str) -> None:
    if current_kid != pending.key.kid:
        raise MeshError(
            f"the registry answered RotateKey with current key {current_kid}, expected "
            f"{pending.key.kid}",
            hint="another rotation of this identity happened elsewhere: treat it as compromised",
        )


__all__ = [
    "DEFAULT_LEAD",
    "PENDING_HISTORY_FILE",
    "PendingRotation",
    "abandon",
    "check_accepted",
    "commit",
    "current",
    "load_pending",
    "prepare",
    "settle_seconds",
]
