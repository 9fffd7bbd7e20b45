"""Key files on disk: PKCS#8 PEM, passphrases, modes, refusals, the agent directory layout."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mesh.errors import KeyFileError, WeakKeyError
from mesh.keyhistory import KeyHistory
from mesh.keys import (
    KEY_HISTORY_FILE,
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    IdentityKey,
    load_identity,
    read_key_history,
    read_private_key,
    read_public_key,
    save_identity,
    write_private_key,
    write_public_key,
)
from mesh.keys.keyfile import PENDING_KEY_FILE, write_key_history

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def key() -> IdentityKey:
    return IdentityKey.from_seed(bytes(range(32)))


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


# -- private keys ---------------------------------------------------------------------------


def test_round_trip_unencrypted(tmp_path: Path, key: IdentityKey) -> None:
    path = write_private_key(tmp_path / "k.pem", key)
    data = path.read_bytes()
    assert data.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert read_private_key(path).kid == key.kid
    # Standard PKCS#8: any library reads it.
    loaded = serialization.load_pem_private_key(data, None)
    assert isinstance(loaded, Ed25519PrivateKey)
    assert loaded.private_bytes_raw() == key.seed()


def test_round_trip_encrypted(tmp_path: Path, key: IdentityKey) -> None:
    path = write_private_key(tmp_path / "k.pem", key, b"correct horse")
    data = path.read_bytes()
    assert data.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert key.seed() not in base64.b64decode(b"".join(data.splitlines()[1:-1]))
    assert read_private_key(path, b"correct horse").kid == key.kid
    loaded = serialization.load_pem_private_key(data, b"correct horse")
    assert isinstance(loaded, Ed25519PrivateKey)


def test_private_key_file_is_0600_whatever_the_umask(
    tmp_path: Path, key: IdentityKey, permissive_umask: None
) -> None:
    path = write_private_key(tmp_path / "k.pem", key)
    assert _mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["k.pem"]  # no temporary file left behind


def test_wrong_passphrase(tmp_path: Path, key: IdentityKey) -> None:
    path = write_private_key(tmp_path / "k.pem", key, b"right")
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        read_private_key(path, b"wrong")


def test_missing_passphrase(tmp_path: Path, key: IdentityKey) -> None:
    path = write_private_key(tmp_path / "k.pem", key, b"right")
    with pytest.raises(KeyFileError, match="is encrypted and no passphrase was given") as info:
        read_private_key(path)
    assert "--passphrase-file" in str(info.value)


def test_passphrase_for_unencrypted_key(tmp_path: Path, key: IdentityKey) -> None:
    path = write_private_key(tmp_path / "k.pem", key)
    with pytest.raises(KeyFileError, match="is not encrypted, but a passphrase was given"):
        read_private_key(path, b"pw")


def test_empty_passphrase_refused(tmp_path: Path, key: IdentityKey) -> None:
    with pytest.raises(KeyFileError, match="passphrase is empty"):
        write_private_key(tmp_path / "k.pem", key, b"")
    assert not (tmp_path / "k.pem").exists()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o602, 0o620, 0o666, 0o700 | 0o004])
def test_insecure_permissions_refused(tmp_path: Path, key: IdentityKey, mode: int) -> None:
    path = write_private_key(tmp_path / "k.pem", key)
    path.chmod(mode)
    with pytest.raises(KeyFileError, match="accessible by group or others") as info:
        read_private_key(path)
    assert f"chmod 600 {path}" in str(info.value)
    assert read_private_key(path, allow_insecure_permissions=True).kid == key.kid


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_owner_only_permissions_accepted(tmp_path: Path, key: IdentityKey, mode: int) -> None:
    path = write_private_key(tmp_path / "k.pem", key)
    path.chmod(mode)
    assert read_private_key(path).kid == key.kid


def _write_0600(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


@pytest.mark.parametrize("kind", ["p256", "x25519"])
def test_not_an_ed25519_key(tmp_path: Path, kind: str) -> None:
    other = (
        ec.generate_private_key(ec.SECP256R1())
        if kind == "p256"
        else (x25519.X25519PrivateKey.generate())
    )
    pem = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = _write_0600(tmp_path / "k.pem", pem)
    name = "EC secp256r1" if kind == "p256" else "X25519"
    with pytest.raises(KeyFileError, match=f"is {name}, not Ed25519"):
        read_private_key(path)


def test_not_an_ed25519_key_encrypted(tmp_path: Path) -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    path = _write_0600(tmp_path / "k.pem", pem)
    with pytest.raises(KeyFileError, match="is EC secp256r1, not Ed25519"):
        read_private_key(path, b"pw")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a PEM private key"),
        (b"hello", "not a PEM private key"),
        (bytes(32), "not a PEM private key"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a PEM private key"),
        (
            b"-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n",
            "not a valid PKCS#8",
        ),
        (
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
            "ssh-keygen -p -m PKCS8",
        ),
    ],
)
def test_malformed_private_key_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = _write_0600(tmp_path / "k.pem", content)
    with pytest.raises(KeyFileError, match=message.replace("(", r"\(")):
        read_private_key(path)


def test_truncated_encrypted_key(tmp_path: Path, key: IdentityKey) -> None:
    path = write_private_key(tmp_path / "k.pem", key, b"pw")
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([lines[0], lines[1], lines[-1]]))
    with pytest.raises(KeyFileError):
        read_private_key(path, b"pw")


def test_missing_file_and_directory_and_huge_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="no such file") as info:
        read_private_key(tmp_path / "absent.key")
    assert "mesh key generate" in str(info.value)
    (tmp_path / "d").mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="not a regular file"):
        read_private_key(tmp_path / "d")
    big = _write_0600(tmp_path / "big", b"-----BEGIN PRIVATE KEY-----" + b"A" * 70_000)
    with pytest.raises(KeyFileError, match="expected at most"):
        read_private_key(big)


def test_never_overwrites_without_asking(tmp_path: Path, key: IdentityKey) -> None:
    path = write_private_key(tmp_path / "k.pem", key)
    before = path.read_bytes()
    other = IdentityKey.from_seed(bytes(32))
    with pytest.raises(KeyFileError, match="already exists; refusing to overwrite"):
        write_private_key(path, other)
    assert path.read_bytes() == before
    write_private_key(path, other, overwrite=True)
    assert read_private_key(path).kid == other.kid
    assert _mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.pem"]


def test_does_not_write_through_a_symlink(tmp_path: Path, key: IdentityKey) -> None:
    target = tmp_path / "elsewhere"
    (tmp_path / "k.pem").symlink_to(target)
    with pytest.raises(KeyFileError, match="already exists"):
        write_private_key(tmp_path / "k.pem", key)
    assert not target.exists()


# -- public keys ----------------------------------------------------------------------------


def test_public_key_formats(tmp_path: Path, key: IdentityKey) -> None:
    pem_path = write_public_key(tmp_path / "k.pub", key.public_key)
    assert pem_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert read_public_key(pem_path) == key.public_key
    b64u = base64.urlsafe_b64encode(key.public_key).decode()
    for name, content in [
        ("raw", key.public_key),
        ("b64u", b64u.rstrip("=").encode()),
        ("b64u-padded", b64u.encode()),
        ("b64u-newline", b64u.rstrip("=").encode() + b"\n"),
    ]:
        (tmp_path / name).write_bytes(content)
        assert read_public_key(tmp_path / name) == key.public_key, name


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (bytes(32), WeakKeyError, "small order"),  # the all-zero encoding has small order
        (bytes.fromhex("01" + "00" * 31), WeakKeyError, "small order"),
        (b"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", WeakKeyError, "small order"),
        (b"", KeyFileError, "not a 32-byte Ed25519 public key"),
        (b"AQAB", KeyFileError, "not a 32-byte Ed25519 public key"),
        (bytes(33), KeyFileError, "neither PEM"),
        (b"not base64 at all!", KeyFileError, "neither PEM"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", KeyFileError, "SPKI"),
    ],
)
def test_bad_public_keys(
    tmp_path: Path, content: bytes, error: type[Exception], message: str
) -> None:
    (tmp_path / "k.pub").write_bytes(content)
    with pytest.raises(error) as info:
        read_public_key(tmp_path / "k.pub")
    assert message.replace("SPKI", "SubjectPublicKeyInfo") in str(info.value)


def test_public_key_of_another_type_or_a_private_key(tmp_path: Path, key: IdentityKey) -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.pub").write_bytes(
        p256.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(KeyFileError, match="is EC secp256r1, not Ed25519"):
        read_public_key(tmp_path / "ec.pub")
    private = write_private_key(tmp_path / "k.pem", key)
    with pytest.raises(KeyFileError, match="is a private key, not a public key"):
        read_public_key(private)


# -- agent directories --------------------------------------------------------------------


def test_save_and_load_identity(tmp_path: Path, key: IdentityKey, permissive_umask: None) -> None:
    directory = tmp_path / "agents" / "a"
    key_path = save_identity(directory, key, b"pw")
    assert key_path == directory / PRIVATE_KEY_FILE
    assert _mode(directory) == 0o700
    assert _mode(directory / PRIVATE_KEY_FILE) == 0o600
    assert _mode(directory / PUBLIC_KEY_FILE) == 0o644
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, KEY_HISTORY_FILE]
    )
    assert read_public_key(directory / PUBLIC_KEY_FILE) == key.public_key
    history = read_key_history(directory)
    assert history is not None
    assert history.did == key.did() and history.current.kid == key.kid
    assert load_identity(directory, b"pw").kid == key.kid
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_identity(directory, b"nope")


def test_save_identity_refuses_an_existing_identity(tmp_path: Path, key: IdentityKey) -> None:
    save_identity(tmp_path / "full", key)
    with pytest.raises(KeyFileError, match="already holds an identity"):
        save_identity(tmp_path / "full", IdentityKey.generate())
    assert load_identity(tmp_path / "full").kid == key.kid
    # Any one of the three files is enough to refuse.
    for name in (PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, KEY_HISTORY_FILE):
        single = tmp_path / name.replace(".", "-")
        single.mkdir()
        original = (tmp_path / "full" / name).read_bytes()
        (single / name).write_bytes(original)
        with pytest.raises(KeyFileError, match=f"already holds an identity \\({name}\\)"):
            save_identity(single, IdentityKey.generate())
        assert [p.name for p in single.iterdir()] == [name]
        assert (single / name).read_bytes() == original


def test_load_refuses_insecure_key_in_directory(tmp_path: Path, key: IdentityKey) -> None:
    save_identity(tmp_path, key)
    (tmp_path / PRIVATE_KEY_FILE).chmod(0o644)
    with pytest.raises(KeyFileError, match=f"chmod 600 {tmp_path / PRIVATE_KEY_FILE}"):
        load_identity(tmp_path)
    assert load_identity(tmp_path, allow_insecure_permissions=True).kid == key.kid


def test_rotation_through_save_identity(tmp_path: Path, key: IdentityKey) -> None:
    history = KeyHistory.incept(key, T0)
    save_identity(tmp_path, key, history=history)
    new = IdentityKey.generate()
    rotated = history.rotate(key, new, T0 + timedelta(days=30))
    save_identity(tmp_path, new, b"pw", history=rotated, overwrite=True)
    assert load_identity(tmp_path, b"pw").kid == new.kid
    assert read_public_key(tmp_path / PUBLIC_KEY_FILE) == new.public_key
    assert read_key_history(tmp_path) == rotated
    assert _mode(tmp_path / PRIVATE_KEY_FILE) == 0o600
    assert not (tmp_path / PENDING_KEY_FILE).exists()
    # Same key, new passphrase: the stored history is kept.
    save_identity(tmp_path, new, b"pw2", overwrite=True)
    assert read_key_history(tmp_path) == rotated
    assert load_identity(tmp_path, b"pw2").kid == new.kid


def test_overwrite_refuses_a_history_that_does_not_extend(tmp_path: Path, key: IdentityKey) -> None:
    history = KeyHistory.incept(key, T0)
    a, b = IdentityKey.generate(), IdentityKey.generate()
    save_identity(tmp_path, a, history=history.rotate(key, a, T0 + timedelta(days=1)))
    fork = history.rotate(key, b, T0 + timedelta(days=2))
    with pytest.raises(KeyFileError, match="does not extend"):
        save_identity(tmp_path, b, history=fork, overwrite=True)
    assert load_identity(tmp_path).kid == a.kid
    stranger = IdentityKey.generate()
    with pytest.raises(KeyFileError, match="holds the identity did:mesh:"):
        save_identity(tmp_path, stranger, overwrite=True)
    with pytest.raises(KeyFileError, match="is not the current key of the history"):
        save_identity(tmp_path / "x", stranger, history=history)


def test_interrupted_rotation_is_finished_on_load(tmp_path: Path, key: IdentityKey) -> None:
    history = KeyHistory.incept(key, T0)
    save_identity(tmp_path, key, history=history)
    new = IdentityKey.generate()
    rotated = history.rotate(key, new, T0 + timedelta(days=30))
    # The first two steps of a rotation, then a crash: new key beside the old, history written.
    write_private_key(tmp_path / PENDING_KEY_FILE, new)
    write_key_history(tmp_path, rotated, overwrite=True)
    assert load_identity(tmp_path).kid == new.kid
    assert not (tmp_path / PENDING_KEY_FILE).exists()
    assert read_private_key(tmp_path / PRIVATE_KEY_FILE).kid == new.kid
    assert read_public_key(tmp_path / PUBLIC_KEY_FILE) == new.public_key


def test_crash_before_history_keeps_the_old_key(tmp_path: Path, key: IdentityKey) -> None:
    save_identity(tmp_path, key)
    write_private_key(tmp_path / PENDING_KEY_FILE, IdentityKey.generate())
    assert load_identity(tmp_path).kid == key.kid


def test_key_that_does_not_match_history(tmp_path: Path, key: IdentityKey) -> None:
    save_identity(tmp_path, key)
    write_private_key(tmp_path / PRIVATE_KEY_FILE, IdentityKey.generate(), overwrite=True)
    with pytest.raises(KeyFileError, match="says the current key is") as info:
        load_identity(tmp_path)
    assert "backup" in str(info.value)


def test_tampered_history_file_fails_load(tmp_path: Path, key: IdentityKey) -> None:
    from mesh.errors import KeyHistoryError

    save_identity(tmp_path, key)
    path = tmp_path / KEY_HISTORY_FILE
    path.write_text(path.read_text().replace('"index": 0', '"index": 1'))
    with pytest.raises(KeyHistoryError, match="rule 'index'"):
        load_identity(tmp_path)


def test_directory_path_is_a_file(tmp_path: Path, key: IdentityKey) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(KeyFileError):
        save_identity(tmp_path / "f", key)
