"""An agent's directory on disk: identity, current X.509-SVID, trust bundle, and who it is.

Layout (the SVID files are named as ``spire-agent api fetch x509 -write`` names them)::

    DIR/identity.key      Ed25519 identity key, PKCS#8 PEM, 0600   (mesh.keys.keyfile)
    DIR/identity.pub      its public key                            (mesh.keys.keyfile)
    DIR/key-history.json  the signed key history                    (mesh.keys.keyfile)
    DIR/svid.0.pem        X.509-SVID chain, leaf first, PEM, 0644
    DIR/svid.0.key        the SVID's P-256 private key, PKCS#8 PEM, 0600
    DIR/bundle.0.pem      the trust bundle's X.509 authorities, PEM, 0644
    DIR/agent.json        {"did", "spiffe_id", "trust_domain", "registry"[, "registry_mtls"]}

Every file is replaced atomically (temporary file with its final mode from
the start, fsync, rename), so a reader sees the old or the new file, never a
torn one. The SVID key is written before the certificate chain: a reader that
catches the instant between the two renames sees a key that does not match the
leaf, and should read again (``X509SVID.load`` reports the mismatch).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh._internal import files
from mesh.errors import MeshError
from mesh.keys.keyfile import KEY_HISTORY_FILE, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE

SVID_FILE = "svid.0.pem"
SVID_KEY_FILE = "svid.0.key"
BUNDLE_FILE = "bundle.0.pem"
AGENT_FILE = "agent.json"

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644
DIRECTORY_MODE = 0o700
_MAX_FILE_BYTES = 1024 * 1024


class AgentDirError(MeshError):
    """An agent directory file is missing, unsafe or malformed."""


@dataclass(frozen=True)
class AgentInfo:
    """Who the agent in a directory is, and where its registry is (``agent.json``)."""

    did: str
    spiffe_id: str
    trust_domain: str
    # The registry's TLS address(es), comma separated (registration, bundle).
    registry: str
    # Its mutual-TLS address(es), only when not the convention (port + 1).
    registry_mtls: str | None = None

    def to_json(self) -> str:
        body = {
            "did": self.did,
            "spiffe_id": self.spiffe_id,
            "trust_domain": self.trust_domain,
            "registry": self.registry,
        }
        if self.registry_mtls:
            body["registry_mtls"] = self.registry_mtls
        return json.dumps(body, indent=2) + "\n"

    @classmethod
    def from_json(cls, data: bytes | str, source: str = AGENT_FILE) -> AgentInfo:
        try:
            doc: Any = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise AgentDirError(
                f"{source} is not valid JSON",
                hint="re-register with `mesh register` to rewrite it",
            ) from None
        if not isinstance(doc, dict):
            raise AgentDirError(f"{source} must hold a JSON object")
        values: dict[str, str] = {}
        for name in ("did", "spiffe_id", "trust_domain", "registry"):
            value = doc.get(name)
            if not isinstance(value, str) or not value:
                raise AgentDirError(
                    f"{source} lacks the string member {name!r}",
                    hint="re-register with `mesh register` to rewrite it",
                )
            values[name] = value
        mtls = doc.get("registry_mtls")
        if mtls is not None and (not isinstance(mtls, str) or not mtls):
            raise AgentDirError(f"{source}: 'registry_mtls' must be a non-empty string")
        return cls(**values, registry_mtls=mtls)


class AgentDir:
    """Paths and atomic reads/writes for one agent directory."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"AgentDir({str(self.path)!r})"

    # -- paths ----------------------------------------------------------------------------

    @property
    def identity_key(self) -> Path:
        return self.path / PRIVATE_KEY_FILE

    @property
    def identity_pub(self) -> Path:
        return self.path / PUBLIC_KEY_FILE

    @property
    def key_history(self) -> Path:
        return self.path / KEY_HISTORY_FILE

    @property
    def svid(self) -> Path:
        return self.path / SVID_FILE

    @property
    def svid_key(self) -> Path:
        return self.path / SVID_KEY_FILE

    @property
    def bundle(self) -> Path:
        return self.path / BUNDLE_FILE

    @property
    def agent_json(self) -> Path:
        return self.path / AGENT_FILE

    # -- state ----------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the directory (0700) if it does not exist."""
        if self.path.is_dir():
            return
        try:
            self.path.mkdir(mode=DIRECTORY_MODE, parents=True)
            os.chmod(self.path, DIRECTORY_MODE)  # mkdir's mode is filtered by the umask
        except FileExistsError:
            if not self.path.is_dir():
                raise AgentDirError(f"{self.path} exists and is not a directory") from None
        except OSError as exc:
            raise AgentDirError(f"cannot create {self.path}: {exc.strerror}") from None

    def has_identity(self) -> bool:
        return self.identity_key.exists()

    def has_svid(self) -> bool:
        return self.svid.exists() and self.svid_key.exists()

    # -- writes ---------------------------------------------------------------------------

    def write_svid(self, chain_pem: bytes, key_pem: bytes) -> None:
        """Replace the SVID: key first (0600), then the chain (see the module notes)."""
        self.ensure()
        _atomic_write(self.svid_key, key_pem, PRIVATE_MODE)
        _atomic_write(self.svid, chain_pem, PUBLIC_MODE)
        # One directory fsync makes both renames durable.

    def write_bundle(self, pem: bytes) -> None:
        """Replace ``bundle.0.pem`` unless it already holds exactly ``pem``."""
        self.ensure()
        _write_if_changed(self.bundle, pem)

    def write_info(self, info: AgentInfo) -> None:
        """Replace ``agent.json`` unless it already says exactly this."""
        self.ensure()
        _write_if_changed(self.agent_json, info.to_json().encode("utf-8"))

    # -- reads ----------------------------------------------------------------------------

    def read_svid(self) -> tuple[bytes, bytes]:
        """(chain PEM, key PEM) of the current SVID; the key file must be 0600 or stricter."""
        key_pem = _read(self.svid_key, private=True, missing=self._not_registered)
        chain_pem = _read(self.svid, private=False, missing=self._not_registered)
        return chain_pem, key_pem

    def read_bundle(self) -> bytes:
        return _read(self.bundle, private=False, missing=self._not_registered)

    def read_info(self) -> AgentInfo | None:
        """``agent.json``, or None before the first registration."""
        if not self.agent_json.exists():
            return None
        data = _read(self.agent_json, private=False, missing=self._not_registered)
        return AgentInfo.from_json(data, str(self.agent_json))

    def _not_registered(self, path: Path) -> AgentDirError:
        return AgentDirError(
            f"{path} does not exist: the agent in {self.path} is not registered",
            hint=f"register it first: mesh register --token TOKEN --out {self.path}",
        )


def _write_if_changed(path: Path, data: bytes) -> None:
    """Public files are rewritten only when they change (most renewals change neither)."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return
    except OSError:
        pass
    _atomic_write(path, data, PUBLIC_MODE)


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    try:
        files.atomic_write(path, data, mode)
    except OSError as exc:
        raise AgentDirError(f"cannot write {path}: {exc.strerror}") from None


def _read(path: Path, *, private: bool, missing: Callable[[Path], AgentDirError]) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise missing(path) from None
    except OSError as exc:
        raise AgentDirError(f"cannot read {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise AgentDirError(f"{path} is not a regular file")
        if private and info.st_mode & 0o077:
            raise AgentDirError(
                f"{path} is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); refusing to use the private key",
                hint=f"chmod 600 {path}",
            )
        if info.st_size > _MAX_FILE_BYTES:
            raise AgentDirError(f"{path} is {info.st_size} bytes; expected at most 1 MiB")
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise AgentDirError(f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
