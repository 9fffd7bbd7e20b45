"""Verifying messages against key histories: rotation, grace, compromise, revocation."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mesh.envelope import (
    BadSignature,
    HistoryKeys,
    RevokedKey,
    UnknownKey,
    Verifier,
    sign_message,
)
from mesh.errors import KeyHistoryError
from mesh.keyhistory import KeyHistory
from mesh.keys import IdentityKey, read_key_history, save_identity

T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
ROTATED = T0 + timedelta(days=30)
BOB = "spiffe://example.org/agent/bob"
OLD = IdentityKey.from_seed(bytes(range(32)))
NEW = IdentityKey.from_seed(bytes(range(2, 34)))
NEWER = IdentityKey.from_seed(bytes(range(3, 35)))
SENDER = str(OLD.did())
INCEPTED = KeyHistory.incept(OLD, T0)
HISTORY = INCEPTED.rotate(OLD, NEW, ROTATED)


def check(key: IdentityKey, issued: datetime, keys: HistoryKeys | None = None) -> None:
    """Sign with ``key`` at ``issued`` and verify at the same instant."""
    keys = keys or HistoryKeys([HISTORY])
    envelope = sign_message(key, SENDER, "t", b"x", BOB, now=issued)
    Verifier(keys, audience=BOB, clock=issued.timestamp).verify(envelope)


def test_each_key_is_accepted_while_it_is_current() -> None:
    check(OLD, T0)
    check(OLD, ROTATED - timedelta(seconds=1))
    check(NEW, ROTATED)
    check(NEW, ROTATED + timedelta(days=365))


def test_a_rotated_key_is_accepted_within_grace_then_revoked() -> None:
    check(OLD, ROTATED + timedelta(minutes=5))
    with pytest.raises(RevokedKey, match="rotated out"):
        check(OLD, ROTATED + timedelta(minutes=5, seconds=1))
    keys = HistoryKeys([HISTORY], grace=timedelta(0))
    with pytest.raises(RevokedKey):
        check(OLD, ROTATED + timedelta(seconds=1), keys)
    with pytest.raises(ValueError):
        HistoryKeys([HISTORY], grace=timedelta(seconds=-1))


def test_a_key_is_unknown_before_it_was_introduced_and_outside_the_history() -> None:
    with pytest.raises(UnknownKey, match="had no key"):
        check(NEW, ROTATED - timedelta(seconds=1))
    with pytest.raises(UnknownKey, match="had no key"):
        check(NEWER, ROTATED)


def test_unknown_sender() -> None:
    envelope = sign_message(NEWER, NEWER.did(), "t", b"x", BOB, now=T0)
    with pytest.raises(UnknownKey, match="no key history"):
        Verifier(HistoryKeys([HISTORY]), audience=BOB, clock=T0.timestamp).verify(envelope)


def test_compromised_keys_and_revoked_senders_are_refused() -> None:
    keys = HistoryKeys([HISTORY])
    keys.revoke_key(OLD.kid)
    with pytest.raises(RevokedKey, match="compromised"):
        check(OLD, T0, keys)
    check(NEW, ROTATED, keys)
    keys.revoke_sender(SENDER)
    with pytest.raises(RevokedKey, match="has been revoked"):
        check(NEW, ROTATED, keys)


def test_key_status_is_checked_before_the_signature() -> None:
    keys = HistoryKeys([HISTORY])
    keys.revoke_key(OLD.kid)
    envelope = sign_message(OLD, SENDER, "t", b"x", BOB, now=T0)
    tampered = dataclasses.replace(envelope, payload=b"y")
    verifier = Verifier(keys, audience=BOB, clock=T0.timestamp)
    with pytest.raises(RevokedKey):
        verifier.verify(tampered)
    with pytest.raises(BadSignature):
        Verifier(HistoryKeys([HISTORY]), audience=BOB, clock=T0.timestamp).verify(tampered)


def test_histories_only_move_forward() -> None:
    keys = HistoryKeys([INCEPTED])
    with pytest.raises(UnknownKey):
        check(NEW, ROTATED, keys)
    keys.update(HISTORY)
    check(NEW, ROTATED, keys)
    keys.update(INCEPTED)  # older: ignored
    check(NEW, ROTATED, keys)
    fork = INCEPTED.rotate(OLD, NEWER, ROTATED)
    with pytest.raises(KeyHistoryError, match="does not extend"):
        keys.update(fork)
    with pytest.raises(UnknownKey):
        check(NEWER, ROTATED, keys)


def test_a_history_read_from_an_agent_directory(tmp_path: Path) -> None:
    save_identity(tmp_path / "alice", NEW, history=HISTORY)
    history = read_key_history(tmp_path / "alice")
    assert history is not None
    check(NEW, ROTATED + timedelta(hours=1), HistoryKeys([history]))
