"""AgentIdentity: the AGT idiom over IdentityKey, key files and key history."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import mesh
from mesh.did import DID
from mesh.errors import KeyFileError, KeyHistoryError
from mesh.identity import PROFILE_FILE, AgentIdentity, AgentIdentityError
from mesh.keyhistory import KeyHistory, KeyStatus
from mesh.keys import KEY_HISTORY_FILE, PRIVATE_KEY_FILE, IdentityKey, save_identity

L = 2**252 + 27742317777372353535851937790883648493  # the order of the Ed25519 base point


def test_generate_like_agt() -> None:
    identity = AgentIdentity.generate("billing-agent", capabilities=["invoice:read", "pay"])
    assert identity.did.startswith("did:mesh:")
    assert identity.did == str(DID.from_public_key(identity.public_key))
    assert identity.name == "billing-agent"
    assert identity.capabilities == ("invoice:read", "pay")
    assert identity.has_capability("pay") and not identity.has_capability("admin")
    assert isinstance(identity.public_key, bytes) and len(identity.public_key) == 32
    assert identity.kid == identity.key.kid
    assert identity.key_history.current.kid == identity.kid
    assert len(identity.key_history) == 1
    assert mesh.AgentIdentity is AgentIdentity


def test_generate_twice_gives_two_identities() -> None:
    a, b = AgentIdentity.generate("a"), AgentIdentity.generate("a")
    assert a.did != b.did and a.public_key != b.public_key


def test_sign_and_verify_signature() -> None:
    identity = AgentIdentity.generate("a")
    message = b"transfer 10 credits to did:mesh:xyz"
    signature = identity.sign(message)
    assert len(signature) == 64
    assert AgentIdentity.verify_signature(identity.public_key, message, signature)
    assert identity.verify_signature(identity.public_key, message, signature)  # AGT calls it so
    assert identity.verify(message, signature)
    assert not AgentIdentity.verify_signature(identity.public_key, message + b"!", signature)
    other = AgentIdentity.generate("b")
    assert not AgentIdentity.verify_signature(other.public_key, message, signature)
    assert not identity.verify(message, other.sign(message))


def test_verify_signature_is_strict_and_never_raises() -> None:
    identity = AgentIdentity.generate("a")
    message = b"m"
    signature = identity.sign(message)
    # S + L: the same signature in a malleable, non-canonical encoding.
    s = int.from_bytes(signature[32:], "little") + L
    malleated = signature[:32] + s.to_bytes(32, "little")
    assert not AgentIdentity.verify_signature(identity.public_key, message, malleated)
    # The identity point as public key with the all-identity signature: valid for any message
    # under a lax verifier, refused here.
    identity_point = bytes.fromhex("01" + "00" * 31)
    assert not AgentIdentity.verify_signature(identity_point, message, identity_point + bytes(32))
    for bad in [
        (identity.public_key[:31], message, signature),
        (identity.public_key, message, signature[:63]),
        (identity.public_key, message, b""),
        (identity.public_key.hex(), message, signature),
        (identity.public_key, "m", signature),
        (None, message, signature),
    ]:
        assert AgentIdentity.verify_signature(*bad) is False  # type: ignore[arg-type]
    assert AgentIdentity.verify_signature(bytearray(identity.public_key), message, signature)


def test_rotate_keeps_the_did() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    identity = AgentIdentity.generate("a", at=at)
    did, old_key = identity.did, identity.public_key
    old_kid = identity.kid
    old_signature = identity.sign(b"before")
    history = identity.rotate(at + timedelta(days=30))
    assert isinstance(history, KeyHistory) and history is identity.key_history
    assert identity.did == did
    assert identity.public_key != old_key
    assert len(history) == 2
    assert history.current.kid == identity.kid
    assert AgentIdentity.verify_signature(old_key, b"before", old_signature)
    assert not identity.verify(b"before", old_signature)
    assert (
        history.status_at(old_kid, at + timedelta(days=30, minutes=5), timedelta(hours=1))
        is KeyStatus.ROTATED_IN_GRACE
    )
    # Anyone holding the log can check it from the inception key alone.
    assert KeyHistory.from_json(history.to_json()).did == DID.parse(did)
    with pytest.raises(KeyHistoryError, match="time-order"):
        identity.rotate(at + timedelta(days=1))


def test_save_and_load(tmp_path: Path) -> None:
    identity = AgentIdentity.generate("billing", capabilities=["invoice:read"])
    assert identity.save(tmp_path / "agent", b"pw") == tmp_path / "agent"
    mode = stat.S_IMODE((tmp_path / "agent" / PRIVATE_KEY_FILE).stat().st_mode)
    assert mode == 0o600
    profile = json.loads((tmp_path / "agent" / PROFILE_FILE).read_text())
    assert profile == {"did": identity.did, "name": "billing", "capabilities": ["invoice:read"]}
    loaded = AgentIdentity.load(tmp_path / "agent", b"pw")
    assert (loaded.did, loaded.name, loaded.capabilities, loaded.public_key) == (
        identity.did,
        identity.name,
        identity.capabilities,
        identity.public_key,
    )
    assert loaded.key_history == identity.key_history
    assert AgentIdentity.verify_signature(identity.public_key, b"x", loaded.sign(b"x"))
    with pytest.raises(KeyFileError, match="is encrypted and no passphrase"):
        AgentIdentity.load(tmp_path / "agent")


def test_rotate_then_save_writes_key_and_history(tmp_path: Path) -> None:
    identity = AgentIdentity.generate("a")
    identity.save(tmp_path)
    identity.rotate()
    identity.save(tmp_path)
    loaded = AgentIdentity.load(tmp_path)
    assert loaded.kid == identity.kid
    assert len(loaded.key_history) == 2
    assert loaded.did == identity.did
    on_disk = KeyHistory.from_json((tmp_path / KEY_HISTORY_FILE).read_text())
    assert on_disk == identity.key_history


def test_stale_copy_cannot_overwrite_a_newer_rotation(tmp_path: Path) -> None:
    identity = AgentIdentity.generate("a")
    identity.save(tmp_path)
    stale = AgentIdentity.load(tmp_path)
    identity.rotate()
    identity.save(tmp_path)
    stale.rotate()
    with pytest.raises(KeyFileError, match="does not extend"):
        stale.save(tmp_path)
    assert AgentIdentity.load(tmp_path).kid == identity.kid


def test_save_over_another_identity_refused(tmp_path: Path) -> None:
    AgentIdentity.generate("a").save(tmp_path)
    with pytest.raises(KeyFileError, match="holds the identity"):
        AgentIdentity.generate("b").save(tmp_path)


def test_load_a_directory_made_without_a_profile(tmp_path: Path) -> None:
    key = IdentityKey.generate()
    save_identity(tmp_path, key)
    loaded = AgentIdentity.load(tmp_path)
    assert loaded.name == str(key.did()) == loaded.did
    assert loaded.capabilities == ()


def test_load_without_history_refused(tmp_path: Path) -> None:
    AgentIdentity.generate("a").save(tmp_path)
    (tmp_path / KEY_HISTORY_FILE).unlink()
    with pytest.raises(KeyFileError, match=r"has no key-history\.json"):
        AgentIdentity.load(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "is not valid JSON"),
        ("[]", "must be an object"),
        ('{"did": "did:mesh:x", "name": "a", "capabilities": []}', "but the key history is"),
        ('{"did": "DID", "name": "", "capabilities": []}', "1 to 256 characters"),
        ('{"did": "DID", "name": "a", "capabilities": "x"}', "must be an object"),
        ('{"did": "DID", "name": "a", "capabilities": [1]}', "a capability is a string"),
    ],
)
def test_bad_profile(tmp_path: Path, content: str, message: str) -> None:
    identity = AgentIdentity.generate("a")
    identity.save(tmp_path)
    (tmp_path / PROFILE_FILE).write_text(content.replace("DID", identity.did))
    with pytest.raises(AgentIdentityError, match=message):
        AgentIdentity.load(tmp_path)


@pytest.mark.parametrize(
    ("name", "capabilities", "message"),
    [
        ("", [], "the agent name must be 1 to 256 characters"),
        ("x" * 257, [], "1 to 256 characters"),
        ("a\nb", [], "control or unassigned"),
        (42, [], "the agent name is a string, got int"),
        ("a", "read", "got a single string"),
        ("a", [""], "a capability must be 1 to 256"),
        ("a", ["ok", None], "a capability is a string, got NoneType"),
        ("a", [f"c{i}" for i in range(257)], "at most 256 capabilities"),
    ],
)
def test_bad_names_and_capabilities(name: object, capabilities: object, message: str) -> None:
    with pytest.raises(AgentIdentityError, match=message):
        AgentIdentity.generate(name, capabilities)  # type: ignore[arg-type]


def test_duplicate_capabilities_collapse_in_order() -> None:
    identity = AgentIdentity.generate("a", capabilities=iter(["b", "a", "b", "c", "a"]))
    assert identity.capabilities == ("b", "a", "c")


def test_mismatched_key_and_history() -> None:
    key, other = IdentityKey.generate(), IdentityKey.generate()
    history = KeyHistory.incept(key, datetime.now(UTC))
    with pytest.raises(AgentIdentityError, match="is not the current key of the history"):
        AgentIdentity("a", other, history)


def test_repr_shows_no_key_material() -> None:
    identity = AgentIdentity.generate("a")
    text = repr(identity)
    assert identity.did in text and identity.kid in text
    assert identity.key.seed().hex() not in text
    assert "seed" not in text.lower()
