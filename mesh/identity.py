"""``AgentIdentity``: the Agent Governance Toolkit idiom, backed by trustmesh's real machinery.

People coming from AGT's AgentMesh write::

    identity = AgentIdentity.generate("billing-agent", capabilities=["invoice:read"])
    identity.did, identity.public_key, identity.sign(b"...")
    AgentIdentity.verify_signature(peer_public_key, message, signature)

Here the key is an :class:`~mesh.keys.IdentityKey` (Ed25519, made locally), the
DID is the ``did:mesh`` derived from the inception key, the identity carries
its signed :class:`~mesh.keyhistory.KeyHistory`, verification is the one strict
Ed25519 policy, and ``save``/``load`` use the agent directory layout of
:mod:`mesh.keys.keyfile` plus ``identity.json`` for the name and capabilities.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mesh.ed25519 import is_acceptable_public_key, verify_strict
from mesh.errors import KeyFileError, MeshError
from mesh.keyhistory import KeyHistory
from mesh.keys.identity_key import IdentityKey
from mesh.keys.keyfile import (
    KEY_HISTORY_FILE,
    PUBLIC_MODE,
    StrPath,
    atomic_write,
    load_identity,
    read_key_history,
    save_identity,
)

# Name and capabilities. Not agent.json: that file belongs to mesh.agentdir (registration).
PROFILE_FILE = "identity.json"
MAX_NAME_CHARS = 256
MAX_CAPABILITIES = 256
_MAX_PROFILE_BYTES = 256 * 1024


class AgentIdentityError(MeshError):
    """An agent name, capability list or saved agent description is invalid."""


class AgentIdentity:
    """An agent's identity: name, capabilities, DID, current key and key history.

    ``repr()`` never shows key material.
    """

    __slots__ = ("_capabilities", "_history", "_key", "_name")

    def __init__(
        self,
        name: str,
        key: IdentityKey,
        history: KeyHistory,
        capabilities: Iterable[str] = (),
    ) -> None:
        if key.kid != history.current.kid:
            raise AgentIdentityError(
                f"key {key.kid} is not the current key of the history ({history.current.kid})",
                hint="pass the key the history was last rotated to",
            )
        self._name = _check_name(name)
        self._capabilities = _check_capabilities(capabilities)
        self._key = key
        self._history = history

    @classmethod
    def generate(
        cls,
        name: str,
        capabilities: Iterable[str] = (),
        *,
        at: datetime | None = None,
    ) -> AgentIdentity:
        """A new identity with a fresh Ed25519 key, incepted ``at`` (default: now)."""
        key = IdentityKey.generate()
        history = KeyHistory.incept(key, at or datetime.now(UTC))
        return cls(name, key, history, capabilities)

    # -- what AGT users read --------------------------------------------------------------

    @property
    def did(self) -> str:
        """``did:mesh:<id>``, fixed for life."""
        return str(self._history.did)

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> tuple[str, ...]:
        return self._capabilities

    @property
    def public_key(self) -> bytes:
        """The current raw 32-byte Ed25519 public key."""
        return self._key.public_key

    @property
    def kid(self) -> str:
        """The current key id (RFC 7638 thumbprint)."""
        return self._key.kid

    @property
    def key(self) -> IdentityKey:
        """The current private key (for signing challenges and CSRs); never log it."""
        return self._key

    @property
    def key_history(self) -> KeyHistory:
        return self._history

    def has_capability(self, capability: str) -> bool:
        return capability in self._capabilities

    # -- signing --------------------------------------------------------------------------

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message`` by the current key."""
        return self._key.sign(message)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True when ``signature`` is this identity's current key's signature of ``message``."""
        return AgentIdentity.verify_signature(self._key.public_key, message, signature)

    @staticmethod
    def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
        """True when ``signature`` verifies under the strict policy and the key is acceptable.

        Never raises: wrong types, weak keys and malformed signatures are just False.
        """
        if not all(isinstance(v, bytes | bytearray) for v in (public_key, message, signature)):
            return False
        public_key, message, signature = bytes(public_key), bytes(message), bytes(signature)
        return is_acceptable_public_key(public_key) and verify_strict(
            public_key, message, signature
        )

    # -- rotation and storage -------------------------------------------------------------

    def rotate(self, at: datetime | None = None) -> KeyHistory:
        """Replace the key with a fresh one, signed over by both; return the new history.

        Call :meth:`save` to write the new key and history to the agent directory.
        """
        next_key = IdentityKey.generate()
        history = self._history.rotate(self._key, next_key, at or datetime.now(UTC))
        self._key, self._history = next_key, history
        return history

    def save(self, directory: StrPath, passphrase: bytes | None = None) -> Path:
        """Write the key, public key, key history and ``identity.json``; return the directory.

        Saving over the same identity (after :meth:`rotate`) replaces its key and
        extends its history; a directory holding another identity is refused.
        """
        directory = Path(directory)
        has_history = (directory / KEY_HISTORY_FILE).exists()
        save_identity(
            directory, self._key, passphrase, history=self._history, overwrite=has_history
        )
        document = {"did": self.did, "name": self._name, "capabilities": list(self._capabilities)}
        data = (json.dumps(document, indent=2) + "\n").encode("utf-8")
        atomic_write(directory / PROFILE_FILE, data, PUBLIC_MODE, overwrite=True)
        return directory

    @classmethod
    def load(
        cls,
        directory: StrPath,
        passphrase: bytes | None = None,
        *,
        allow_insecure_permissions: bool = False,
    ) -> AgentIdentity:
        """Load an identity saved by :meth:`save` or ``mesh key generate``.

        Without ``identity.json`` (as ``mesh key generate`` leaves it) the name is the
        DID and there are no capabilities.
        """
        directory = Path(directory)
        key = load_identity(directory, passphrase, allow_insecure_permissions)
        history = read_key_history(directory)
        if history is None:
            raise KeyFileError(
                f"{directory} has no {KEY_HISTORY_FILE}; the DID cannot be established",
                hint="restore key-history.json from a backup of this agent directory",
            )
        name, capabilities = _read_profile(directory / PROFILE_FILE, str(history.did))
        return cls(name, key, history, capabilities)

    def __repr__(self) -> str:
        return f"AgentIdentity(name={self._name!r}, did={self.did!r}, kid={self.kid!r})"


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise AgentIdentityError(f"{what} is a string, got {type(value).__name__}")
    if not value or len(value) > MAX_NAME_CHARS:
        raise AgentIdentityError(f"{what} must be 1 to {MAX_NAME_CHARS} characters")
    if any(unicodedata.category(c).startswith("C") for c in value):
        raise AgentIdentityError(f"{what} {value[:40]!r} contains control or unassigned characters")
    return value


def _check_name(name: object) -> str:
    return _check_text(name, "the agent name")


def _check_capabilities(capabilities: Iterable[str]) -> tuple[str, ...]:
    if isinstance(capabilities, str | bytes):
        raise AgentIdentityError(
            "capabilities is a list of strings, got a single string",
            hint='write capabilities=["read:data"], not capabilities="read:data"',
        )
    # Keep the caller's order, drop repeats: capabilities are a set with a stable spelling.
    unique = tuple(dict.fromkeys(_check_text(c, "a capability") for c in capabilities))
    if len(unique) > MAX_CAPABILITIES:
        raise AgentIdentityError(f"an agent has at most {MAX_CAPABILITIES} capabilities")
    return unique


def _read_profile(path: Path, did: str) -> tuple[str, tuple[str, ...]]:
    if not path.exists():
        return did, ()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > _MAX_PROFILE_BYTES:
        raise AgentIdentityError(f"{path} is larger than {_MAX_PROFILE_BYTES} bytes")
    try:
        document: Any = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AgentIdentityError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("capabilities"), list):
        raise AgentIdentityError(f"{path} must be an object with name, did and capabilities")
    if document.get("did") != did:
        raise AgentIdentityError(
            f"{path} describes {str(document.get('did'))[:80]}, but the key history is {did}",
            hint=f"restore the {PROFILE_FILE} that belongs to this agent directory",
        )
    return _check_name(document.get("name")), _check_capabilities(document["capabilities"])
