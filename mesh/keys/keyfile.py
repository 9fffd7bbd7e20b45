"""Identity keys on disk: PKCS#8 PEM private keys (optionally encrypted), public keys, key history.

An agent directory has a fixed layout that other code relies on::

    DIR/identity.key      private key, PKCS#8 PEM, mode 0600 (encrypted when a passphrase is set)
    DIR/identity.pub      public key, SubjectPublicKeyInfo PEM
    DIR/key-history.json  the signed key history (mesh.keyhistory)

Private key files are written atomically and are never world-readable, not
even for an instant: the bytes go to a temporary file created with mode 0600
in the same directory, are fsynced, then renamed into place. Reading refuses a
private key file that group or others can access, as OpenSSH does.

A rotation replaces the key and extends the history. To survive a crash in the
middle, the new key is first written beside the old one (``identity.key.next``),
then the history, then the key is renamed into place; :func:`load_identity`
finishes an interrupted rotation.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mesh._internal import files
from mesh.ed25519 import PUBLIC_KEY_SIZE, check_public_key
from mesh.errors import KeyFileError
from mesh.keys.identity_key import IdentityKey

if TYPE_CHECKING:
    from mesh.keyhistory import KeyHistory

PRIVATE_KEY_FILE = "identity.key"
PUBLIC_KEY_FILE = "identity.pub"
KEY_HISTORY_FILE = "key-history.json"
PENDING_KEY_FILE = "identity.key.next"

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644
DIRECTORY_MODE = 0o700
# Key files are tiny; refuse to read anything large (a wrong path, a device).
_MAX_KEY_FILE_BYTES = 64 * 1024
_MAX_HISTORY_FILE_BYTES = 8 * 1024 * 1024

StrPath = str | os.PathLike[str]
_B64U = re.compile(r"[A-Za-z0-9_-]*")


# -- private keys -------------------------------------------------------------------------


def write_private_key(
    path: StrPath, key: IdentityKey, passphrase: bytes | None = None, *, overwrite: bool = False
) -> Path:
    """Write ``key`` as PKCS#8 PEM (encrypted with ``passphrase`` if given), mode 0600, atomically.

    Refuses to replace an existing file unless ``overwrite``.
    """
    path = Path(path)
    atomic_write(path, private_key_pem(key, passphrase), PRIVATE_MODE, overwrite=overwrite)
    return path


def private_key_pem(key: IdentityKey, passphrase: bytes | None = None) -> bytes:
    """The PKCS#8 PEM encoding of ``key``; encrypted (best available scheme) with a passphrase."""
    encryption: serialization.KeySerializationEncryption
    if passphrase is None:
        encryption = serialization.NoEncryption()
    elif not passphrase:
        raise KeyFileError(
            "the passphrase is empty",
            hint="give a non-empty passphrase, or none to store the key unencrypted",
        )
    else:
        encryption = serialization.BestAvailableEncryption(passphrase)
    private = Ed25519PrivateKey.from_private_bytes(key.seed())
    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def read_private_key(
    path: StrPath,
    passphrase: bytes | None = None,
    *,
    allow_insecure_permissions: bool = False,
) -> IdentityKey:
    """Load an Ed25519 private key from a PKCS#8 PEM file; raise :class:`KeyFileError` if unsafe."""
    path = Path(path)
    data = _read_checked(path, private=not allow_insecure_permissions)
    return _parse_private_pem(path, data, passphrase)


def _parse_private_pem(path: Path, data: bytes, passphrase: bytes | None) -> IdentityKey:
    if b"-----BEGIN OPENSSH PRIVATE KEY-----" in data:
        raise KeyFileError(
            f"{path} is an OpenSSH private key, not PKCS#8",
            hint=f"convert it with `ssh-keygen -p -m PKCS8 -f {path}`",
        )
    if b"-----BEGIN" not in data or b"PRIVATE KEY-----" not in data:
        raise KeyFileError(
            f"{path} is not a PEM private key",
            hint="expected a PKCS#8 PEM file as written by `mesh key generate`",
        )
    encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data
    if encrypted and passphrase is None:
        raise KeyFileError(
            f"{path} is encrypted and no passphrase was given",
            hint="pass its passphrase; on the command line, use --passphrase-file FILE",
        )
    if not encrypted and passphrase is not None:
        raise KeyFileError(
            f"{path} is not encrypted, but a passphrase was given",
            hint="drop the passphrase, or re-save the key with one to encrypt it",
        )
    try:
        private = serialization.load_pem_private_key(data, password=passphrase)
    except UnsupportedAlgorithm:
        raise KeyFileError(
            f"{path} holds a key of an unsupported algorithm",
            hint="a trustmesh identity key is Ed25519",
        ) from None
    except (ValueError, TypeError):
        if encrypted:
            raise KeyFileError(
                f"cannot decrypt {path}: wrong passphrase",
                hint="check the passphrase; one trailing newline in a passphrase file is ignored",
            ) from None
        raise KeyFileError(
            f"{path} is not a valid PKCS#8 PEM private key",
            hint="restore it from a backup, or generate a new identity with `mesh key generate`",
        ) from None
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyFileError(
            f"the key in {path} is {_kind(private)}, not Ed25519",
            hint="a trustmesh identity key is Ed25519; generate one with `mesh key generate`",
        )
    return IdentityKey.from_seed(private.private_bytes_raw())


# -- public keys --------------------------------------------------------------------------


def public_key_pem(public_key: bytes) -> bytes:
    """The SubjectPublicKeyInfo PEM encoding of a raw Ed25519 public key."""
    check_public_key(public_key)
    return Ed25519PublicKey.from_public_bytes(public_key).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_public_key(path: StrPath, public_key: bytes, *, overwrite: bool = False) -> Path:
    """Write a raw Ed25519 public key as SubjectPublicKeyInfo PEM (mode 0644), atomically."""
    path = Path(path)
    atomic_write(path, public_key_pem(public_key), PUBLIC_MODE, overwrite=overwrite)
    return path


def read_public_key(path: StrPath) -> bytes:
    """Read a raw Ed25519 public key from SPKI PEM, a raw 32-byte file, or base64url text.

    The key must pass :func:`mesh.ed25519.check_public_key` (raises ``WeakKeyError``).
    """
    path = Path(path)
    data = _read_checked(path, private=False)
    return check_public_key(parse_public_key(data, str(path)))


def parse_public_key(data: bytes, source: str = "the public key") -> bytes:
    """The raw 32 bytes of an Ed25519 public key given as SPKI PEM, raw bytes or base64url."""
    if len(data) == PUBLIC_KEY_SIZE:
        return data
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        if b"PRIVATE KEY-----" in text:
            raise KeyFileError(
                f"{source} is a private key, not a public key",
                hint="give the identity.pub file, and keep private keys where they are",
            )
        try:
            public = serialization.load_pem_public_key(text)
        except (ValueError, UnsupportedAlgorithm):
            raise KeyFileError(
                f"{source} is not a valid SubjectPublicKeyInfo PEM public key"
            ) from None
        if not isinstance(public, Ed25519PublicKey):
            raise KeyFileError(f"the key in {source} is {_kind(public)}, not Ed25519")
        return public.public_bytes_raw()
    try:
        encoded = text.decode("ascii").rstrip("=")
        if not _B64U.fullmatch(encoded):
            raise ValueError("not base64url")
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (UnicodeDecodeError, binascii.Error, ValueError):
        raise KeyFileError(
            f"{source} is neither PEM, raw 32 bytes, nor base64url",
            hint="expected an identity.pub file or the base64url public key",
        ) from None
    if not encoded or len(raw) != PUBLIC_KEY_SIZE or _b64u(raw) != encoded:
        raise KeyFileError(
            f"{source} is not a 32-byte Ed25519 public key in base64url",
            hint="expected 43 base64url characters; padding is optional",
        )
    return raw


# -- key history --------------------------------------------------------------------------


def read_key_history(directory: StrPath) -> KeyHistory | None:
    """The verified key history of an agent directory, or None when it has none."""
    from mesh.keyhistory import KeyHistory  # here: mesh.keyhistory imports mesh.keys

    path = Path(directory) / KEY_HISTORY_FILE
    if not path.exists():
        return None
    data = _read_checked(path, private=False, limit=_MAX_HISTORY_FILE_BYTES)
    return KeyHistory.from_json(data)


def write_key_history(directory: StrPath, history: KeyHistory, *, overwrite: bool = False) -> Path:
    path = Path(directory) / KEY_HISTORY_FILE
    atomic_write(path, history.to_json().encode("utf-8"), PUBLIC_MODE, overwrite=overwrite)
    return path


# -- agent directories --------------------------------------------------------------------


def save_identity(
    directory: StrPath,
    key: IdentityKey,
    passphrase: bytes | None = None,
    *,
    history: KeyHistory | None = None,
    overwrite: bool = False,
) -> Path:
    """Write identity.key, identity.pub and key-history.json to ``directory``; return the key path.

    ``directory`` is created with mode 0700. Without ``history`` a new one is
    incepted now from ``key`` (or, with ``overwrite``, the stored one is kept when
    ``key`` is its current key, e.g. to change the passphrase). ``key`` must be
    the history's current key.

    Without ``overwrite`` an existing identity is never replaced. With it, the
    stored history must be a prefix of ``history`` (same DID, nothing dropped).
    """
    from mesh.keyhistory import KeyHistory

    directory = Path(directory)
    key_path = directory / PRIVATE_KEY_FILE
    existing_files = [
        directory / name
        for name in (PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, KEY_HISTORY_FILE)
        if (directory / name).exists()
    ]
    if existing_files and not overwrite:
        raise KeyFileError(
            f"{directory} already holds an identity ({existing_files[0].name}); refusing to "
            "overwrite it",
            hint="choose an empty directory; to rotate, use the identity's rotate() and save()",
        )
    stored = read_key_history(directory) if overwrite else None
    if history is None:
        if stored is not None and stored.current.kid == key.kid:
            history = stored
        else:
            history = KeyHistory.incept(key, datetime.now(UTC))
    if history.current.kid != key.kid:
        raise KeyFileError(
            f"key {key.kid} is not the current key of the history ({history.current.kid})",
            hint="save the key the history was last rotated to",
        )
    if stored is not None:
        if stored.did != history.did:
            raise KeyFileError(
                f"{directory} holds the identity {stored.did}, not {history.did}",
                hint="save each identity to its own directory",
            )
        if not stored.is_prefix_of(history):
            raise KeyFileError(
                f"the key history to save does not extend the one in {directory}",
                hint="load the identity from this directory before rotating it",
            )

    _make_directory(directory)
    if not existing_files:
        write_private_key(key_path, key, passphrase)
        write_public_key(directory / PUBLIC_KEY_FILE, key.public_key)
        write_key_history(directory, history)
        return key_path

    # Replacing: new key beside the old one, then the history, then the key into place.
    pending = directory / PENDING_KEY_FILE
    pending.unlink(missing_ok=True)
    write_private_key(pending, key, passphrase)
    write_key_history(directory, history, overwrite=True)
    _finish_rotation(directory, pending, key)
    return key_path


def load_identity(
    directory: StrPath,
    passphrase: bytes | None = None,
    allow_insecure_permissions: bool = False,
) -> IdentityKey:
    """Load the identity key of an agent directory, checked against its key history."""
    directory = Path(directory)
    key_path = directory / PRIVATE_KEY_FILE
    key = read_private_key(
        key_path, passphrase, allow_insecure_permissions=allow_insecure_permissions
    )
    history = read_key_history(directory)
    if history is None or history.current.kid == key.kid:
        return key
    pending = directory / PENDING_KEY_FILE
    if pending.exists():
        new_key = read_private_key(
            pending, passphrase, allow_insecure_permissions=allow_insecure_permissions
        )
        if new_key.kid == history.current.kid:
            # A rotation was interrupted after its history was written: finish it.
            _finish_rotation(directory, pending, new_key)
            return new_key
    raise KeyFileError(
        f"{key_path} holds key {key.kid}, but {KEY_HISTORY_FILE} says the current key is "
        f"{history.current.kid}",
        hint="restore the matching identity.key (or key-history.json) from a backup",
    )


def _finish_rotation(directory: Path, pending: Path, key: IdentityKey) -> None:
    os.replace(pending, directory / PRIVATE_KEY_FILE)
    files.fsync_directory(directory)
    write_public_key(directory / PUBLIC_KEY_FILE, key.public_key, overwrite=True)


# -- file plumbing ------------------------------------------------------------------------


def _make_directory(directory: Path) -> None:
    if directory.is_dir():
        return
    try:
        directory.mkdir(mode=DIRECTORY_MODE, parents=True)
        os.chmod(directory, DIRECTORY_MODE)  # mkdir's mode is filtered by the umask
    except FileExistsError:
        if not directory.is_dir():
            raise KeyFileError(f"{directory} exists and is not a directory") from None
    except OSError as exc:
        raise KeyFileError(f"cannot create {directory}: {exc.strerror}") from None


def atomic_write(path: Path, data: bytes, mode: int, *, overwrite: bool) -> None:
    """Write ``data`` to ``path`` with ``mode`` crash-safely; refuse to replace it unless told."""
    try:
        files.atomic_write(path, data, mode, overwrite=overwrite)
    except FileExistsError:
        raise KeyFileError(
            f"{path} already exists; refusing to overwrite it",
            hint="choose another path, or move the existing file away first",
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot write {path}: {exc.strerror}") from None


def _read_checked(path: Path, *, private: bool, limit: int = _MAX_KEY_FILE_BYTES) -> bytes:
    """Read a small regular file; for a private key refuse group/other access (seen on the fd)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KeyFileError(
            f"no such file: {path}",
            hint="create an identity with `mesh key generate --out DIR`",
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"{path} is not a regular file")
        if private and info.st_mode & 0o077:
            raise KeyFileError(
                f"{path} is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); refusing to use the private key",
                hint=f"chmod 600 {path}",
            )
        if info.st_size > limit:
            raise KeyFileError(f"{path} is {info.st_size} bytes; expected at most {limit}")
        chunks = []
        remaining = limit + 1
        while remaining > 0:
            chunk = os.read(fd, remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise KeyFileError(f"{path} is larger than {limit} bytes")
        return data
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _kind(key: object) -> str:
    """A readable name for the algorithm of a key someone gave us by mistake."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    kinds: list[tuple[tuple[type, ...], str]] = [
        ((rsa.RSAPrivateKey, rsa.RSAPublicKey), "RSA"),
        ((dsa.DSAPrivateKey, dsa.DSAPublicKey), "DSA"),
        ((ed448.Ed448PrivateKey, ed448.Ed448PublicKey), "Ed448"),
        ((x25519.X25519PrivateKey, x25519.X25519PublicKey), "X25519"),
        ((x448.X448PrivateKey, x448.X448PublicKey), "X448"),
    ]
    for types, name in kinds:
        if isinstance(key, types):
            return name
    return type(key).__name__
